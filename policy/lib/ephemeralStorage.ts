// Whether a pod's disk-backed emptyDirs fit its ephemeral-storage limit. The kubelet evicts a pod whose
// local disk use (emptyDirs, writable layers, logs) passes the pod's limit, which it computes as
// Kubernetes' PodLimits does: the containers' limits summed, or an init container's if that is larger
// (init containers run one at a time, before the containers). So emptyDir sizeLimits that add up to more
// than that are a promise the pod cannot keep: it is evicted before its volumes fill.
import { quantityValue as parse } from "../../shared/quantity";
import { must } from "./unknowns";
import type { Container, PodSpec } from "./workloads";

const LIMIT = "ephemeral-storage";
/** Bytes of a quantity; a value unknown during preview abandons the check (inside `attempt`). */
const quantityValue = (q: string) => parse(must(q));

export interface EphemeralStorageFit {
    /** Disk-backed emptyDirs (medium Memory counts against memory instead) with their sizeLimit. */
    emptyDirs: { name: string; sizeLimit?: string }[];
    /** The pod's ephemeral-storage limit in bytes, if any container sets one. */
    podLimit?: number;
    /** How podLimit was computed, for messages: `containers "a" 256Mi + "b" 256Mi`. */
    podLimitFrom: string;
    /** Every problem, as a sentence; empty when the volumes fit. */
    problems: string[];
}

const limitOf = (c: Container): string | undefined => {
    const v = (c.resources?.limits as Record<string, unknown> | undefined)?.[LIMIT];
    return typeof v === "string" || typeof v === "number" ? String(v) : undefined;
};

/** A size as the manifest writes it when it is one, else in MiB. */
const show = (bytes: number) => (bytes % 2 ** 30 === 0 ? `${bytes / 2 ** 30}Gi` : `${Math.round((bytes / 2 ** 20) * 100) / 100}Mi`);

export function ephemeralStorageFit(spec: PodSpec): EphemeralStorageFit {
    const emptyDirs = (spec.volumes ?? [])
        .filter((v) => v.emptyDir && v.emptyDir.medium !== "Memory")
        .map((v) => ({ name: v.name, sizeLimit: v.emptyDir!.sizeLimit === undefined ? undefined : String(v.emptyDir!.sizeLimit) }));
    const problems: string[] = [];
    const containers = spec.containers ?? [];
    const withLimit = containers.filter((c) => limitOf(c) !== undefined);
    const sum = withLimit.reduce((n, c) => n + quantityValue(limitOf(c)!), 0);
    const init = (spec.initContainers ?? []).filter((c) => limitOf(c) !== undefined).sort((a, b) => quantityValue(limitOf(b)!) - quantityValue(limitOf(a)!))[0];
    const initLimit = init ? quantityValue(limitOf(init)!) : 0;
    const podLimit = withLimit.length || init ? Math.max(sum, initLimit) : undefined;
    const podLimitFrom =
        init && initLimit > sum
            ? `init container "${init.name}" ${limitOf(init)}`
            : `${withLimit.length === 1 ? "container" : "containers"} ${withLimit.map((c) => `"${c.name}" ${limitOf(c)}`).join(" + ")}`;
    if (emptyDirs.length === 0) return { emptyDirs, podLimit, podLimitFrom, problems };

    for (const v of emptyDirs.filter((d) => d.sizeLimit === undefined)) {
        problems.push(`emptyDir "${v.name}" has no sizeLimit: it may grow until the node's disk is full; set one within the pod's ephemeral-storage limit`);
    }
    if (podLimit === undefined) {
        problems.push(`has emptyDir volumes (${emptyDirs.map((d) => `"${d.name}"`).join(", ")}) but no container sets resources.limits.${LIMIT}: nothing bounds the pod's disk use`);
        return { emptyDirs, podLimit, podLimitFrom, problems };
    }
    const sized = emptyDirs.filter((d) => d.sizeLimit !== undefined);
    const total = sized.reduce((n, d) => n + quantityValue(d.sizeLimit!), 0);
    if (total > podLimit) {
        problems.push(
            `emptyDir sizeLimits add up to ${show(total)} (${sized.map((d) => `"${d.name}" ${d.sizeLimit}`).join(" + ")}), above the pod's ${LIMIT} limit ${show(podLimit)} ` +
                `(${podLimitFrom}): the kubelet evicts the pod before its volumes fill; lower the sizeLimits or raise the limits`,
        );
    }
    return { emptyDirs, podLimit, podLimitFrom, problems };
}
