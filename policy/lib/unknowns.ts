// Values that are not known yet during `pulumi preview` (an output of a resource still to be created).
//
// The policy runtime wraps every resource's properties in a proxy that throws `UnknownValueError` when a
// policy reads such a value; if the error escapes, the whole policy is skipped for that resource (or, for
// a stack policy, for the whole stack) with an advisory "can't run policy during preview" note. The
// helpers below narrow that to the one container, workload or reference whose value is unknown, so the
// rest is still checked. Unproxied values carry the engine's sentinel strings instead; those count too.

/** The engine's sentinels for unknown values (pulumi/pkg `resource/plugin`, @pulumi/policy `proxy.ts`). */
const UNKNOWN_SENTINELS = new Set([
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7", // boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421", // number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9", // string (what the engine sends for any unknown)
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2", // array
    "030794c1-ac77-496b-92df-f27374a8bd58", // asset
    "e48ece36-62e2-4504-bad9-02848725956a", // archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff", // object
]);

/** Marks a value that cannot be known during preview. */
export const UNKNOWN: unique symbol = Symbol("unknown during preview");
export type Unknown = typeof UNKNOWN;

export const isUnknownSentinel = (v: unknown): boolean => typeof v === "string" && UNKNOWN_SENTINELS.has(v);

/**
 * True for the error the policy runtime's proxy throws on reading an unknown value. Matched by name as
 * well as by class, so that it holds even if two copies of @pulumi/policy are loaded.
 */
export function isUnknownValueError(e: unknown): boolean {
    return e instanceof Error && e.constructor?.name === "UnknownValueError";
}

/** Thrown by `must` inside an `attempt`, which turns it into UNKNOWN. */
class UnknownInPolicy extends Error {}

/** The value itself, or (inside `attempt`) abandons the evaluation as unknown. */
export function must<T>(v: T | Unknown): T {
    if (v === UNKNOWN || isUnknownSentinel(v)) throw new UnknownInPolicy("unknown during preview");
    return v as T;
}

/** Evaluates `f`, or returns UNKNOWN if it reads a value that is unknown during preview. */
export function attempt<T>(f: () => T): T | Unknown {
    try {
        const value = f();
        return isUnknownSentinel(value) ? UNKNOWN : value;
    } catch (e) {
        if (e instanceof UnknownInPolicy || isUnknownValueError(e)) return UNKNOWN;
        throw e;
    }
}

/**
 * Whether any item satisfies `test`: true, false, or UNKNOWN when none definitely does and at least
 * one could not be evaluated (it read a value unknown during preview).
 */
export function anyOf<T>(items: T[], test: (item: T) => boolean): boolean | Unknown {
    let unknown = false;
    for (const item of items) {
        const r = attempt(() => test(item));
        if (r === true) return true;
        if (r === UNKNOWN) unknown = true;
    }
    return unknown ? UNKNOWN : false;
}
