// The order `pulumi up` would create the rendered Kubernetes objects in: each object after every object
// it depends on, as the engine sees the dependencies (dependsOn and data flow, recorded by the mock
// runtime), through the non-Kubernetes resources in between (a Secret waits for its RandomPassword, which
// waits for nothing). Ties keep the program's registration order; Namespaces go first, since nothing
// namespaced can be created before its namespace.
import { createHash } from "crypto";
import { KubeObject, parseKubeType, toKubeObjects } from "../lib/manifests";
import type { Registered } from "../lib/mockRuntime";

export interface OrderedObject {
    object: KubeObject;
    urn: string;
    /** URNs of the Kubernetes objects this one waits for (directly or through other resources). */
    waitsFor: string[];
}

/** `Kind namespace/name` (or `Kind name`), how an object is named in errors. */
export const describeObject = (o: KubeObject): string => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata.name}`;

/** The qualified type of a URN (`parentType$type`), its third `::` field. */
const qualifiedType = (urn: string): string => urn.split("::")[2] ?? "";

export function applyOrder(resources: Registered[], showSecrets = false): OrderedObject[] {
    const withUrn = resources.map((r, i) => ({ r, urn: r.urn ?? `#${i}:${r.type}::${r.name}` }));
    const byUrn = new Map(withUrn.map((x) => [x.urn, x.r]));
    const isKube = (r: Registered) => r.custom && parseKubeType(r.type) !== undefined;
    const kubeUrns = withUrn.filter((x) => isKube(x.r)).map((x) => x.urn);

    // A dependency on a component means its children: the Kubernetes objects whose qualified type is
    // nested under the component's (each component type is registered once per stack).
    const expand = (urn: string): string[] => {
        const r = byUrn.get(urn);
        if (r && r.custom) return [urn];
        const prefix = `${qualifiedType(urn)}$`;
        return kubeUrns.filter((u) => qualifiedType(u).startsWith(prefix));
    };
    const memo = new Map<string, Set<string>>();
    const kubeDeps = (urn: string, seen = new Set<string>()): Set<string> => {
        const done = memo.get(urn);
        if (done) return done;
        const out = new Set<string>();
        if (seen.has(urn)) return out;
        seen.add(urn);
        for (const dep of byUrn.get(urn)?.dependencies ?? []) {
            for (const d of expand(dep)) {
                const r = byUrn.get(d);
                if (!r || d === urn) continue;
                if (isKube(r)) out.add(d);
                else for (const x of kubeDeps(d, seen)) out.add(x);
            }
        }
        memo.set(urn, out);
        return out;
    };

    const nodes = withUrn
        .filter((x) => isKube(x.r))
        .map((x, index) => ({ index, urn: x.urn, object: toKubeObjects([x.r], showSecrets)[0], waitsFor: new Set(kubeDeps(x.urn)) }));
    const namespaces = new Map(nodes.filter((n) => n.object.kind === "Namespace").map((n) => [n.object.metadata.name, n.urn]));
    for (const n of nodes) {
        const ns = n.object.metadata.namespace;
        if (ns && namespaces.has(ns)) n.waitsFor.add(namespaces.get(ns)!);
    }

    const placed = new Set<string>();
    const order: OrderedObject[] = [];
    const rank = (n: (typeof nodes)[number]) => (n.object.kind === "Namespace" ? -1 : n.index);
    while (order.length < nodes.length) {
        const ready = nodes.filter((n) => !placed.has(n.urn) && [...n.waitsFor].every((u) => placed.has(u)));
        if (!ready.length) {
            const stuck = nodes.filter((n) => !placed.has(n.urn)).map((n) => describeObject(n.object));
            throw new Error(`the rendered objects depend on each other in a cycle: ${stuck.join(", ")}`);
        }
        const next = ready.reduce((a, b) => (rank(b) < rank(a) ? b : a));
        placed.add(next.urn);
        order.push({ object: next.object, urn: next.urn, waitsFor: [...next.waitsFor] });
    }
    return order;
}

export const PATCH_FIELD_MANAGER = "pulumi.com/patchFieldManager";
export const PATCH_FORCE = "pulumi.com/patchForce";

/**
 * The server-side apply field manager the Pulumi Kubernetes provider uses for an object: the
 * `pulumi.com/patchFieldManager` annotation when set, else `pulumi-kubernetes-<8 random hex>`, made
 * once per resource and kept in its state (pulumi/pulumi-kubernetes, provider/pkg/provider/provider.go,
 * `fieldManagerName`: `resource.NewUniqueName(randomSeed, "pulumi-kubernetes-", 0, 0, nil)`). Here the
 * suffix derives from the URN, so every apply of the same resource uses the same manager, as the state
 * makes it on a second `pulumi up`.
 */
export function fieldManagerFor(o: OrderedObject): string {
    const annotated = (o.object.metadata.annotations as Record<string, string> | undefined)?.[PATCH_FIELD_MANAGER];
    if (annotated) return annotated;
    return `pulumi-kubernetes-${createHash("sha256").update(o.urn).digest("hex").slice(0, 8)}`;
}

/**
 * Whether the provider forces conflicts (provider/pkg/await/await.go, `patchForce`): the
 * `pulumi.com/patchForce` annotation; otherwise only on preview of an object that does not exist yet.
 */
export function forceFor(o: OrderedObject, preview: boolean, exists: boolean): boolean {
    const a = (o.object.metadata.annotations as Record<string, string> | undefined)?.[PATCH_FORCE];
    if (a === "true") return true;
    return preview && !exists;
}
