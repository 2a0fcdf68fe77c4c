// Kubernetes quantities (resource.Quantity): a decimal number with an optional SI or binary suffix.
// Hand-written because no maintained npm package exposes the apimachinery parser. Owned by neither
// side: the config schemas (components/fields.ts) and the policy pack (policy/) both compare sizes.
export const QUANTITY = /^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

/** Bytes (or cores) of a Kubernetes quantity, for comparing two of them. */
export function quantityValue(q: string): number {
    const m = QUANTITY.exec(q);
    if (!m) throw new Error(`not a Kubernetes quantity: ${q}`);
    const factors: Record<string, number> = {
        m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
        Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
    };
    return Number(m[1]) * (m[3] ? factors[m[3]] : 1);
}
