// Local ephemeral storage as the kubelet watches it: a pod whose emptyDir outgrows its sizeLimit, or
// whose emptyDirs together outgrow the pod's ephemeral-storage limit (its containers' limits summed), is
// evicted; its controller then starts it again with empty emptyDirs. Usage is what the files occupy on
// disk (allocated blocks), measured on the kubelet's housekeeping interval.
import * as fs from "fs";
import * as path from "path";
import { quantityValue } from "../../shared/quantity";
import type { PodSpec } from "./stack";

export interface DiskLimits {
    emptyDirs: { name: string; path: string; limitBytes?: number }[];
    /** The pod's ephemeral-storage limit: its containers' limits summed (when each container sets one). */
    podLimitBytes?: number;
}

/** The kubelet's housekeeping interval, on which it checks local storage. */
export const DISK_CHECK_MS = 10_000;

/** The emptyDirs of a pod (as laid out locally in `dirs`) with their limits. */
export function diskLimitsOf(pod: PodSpec, dirs: Record<string, string>): DiskLimits {
    const emptyDirs = (pod.volumes ?? [])
        .filter((v) => v.emptyDir && dirs[v.name])
        .map((v) => ({ name: v.name, path: dirs[v.name], ...(v.emptyDir!.sizeLimit ? { limitBytes: quantityValue(v.emptyDir!.sizeLimit) } : {}) }));
    const limits = pod.containers.map((c) => c.resources?.limits?.["ephemeral-storage"]);
    const podLimitBytes = limits.every((l) => l !== undefined) ? limits.reduce((a, l) => a + quantityValue(l!), 0) : undefined;
    return { emptyDirs, ...(podLimitBytes !== undefined ? { podLimitBytes } : {}) };
}

/** Bytes allocated on disk under `dir` (files, not following links). */
export function usageBytes(dir: string): number {
    let total = 0;
    const walk = (d: string) => {
        let entries: fs.Dirent[];
        try {
            entries = fs.readdirSync(d, { withFileTypes: true });
        } catch {
            return;
        }
        for (const e of entries) {
            const p = path.join(d, e.name);
            try {
                const st = fs.lstatSync(p);
                total += st.blocks * 512;
                if (st.isDirectory()) walk(p);
            } catch {
                /* removed meanwhile */
            }
        }
    };
    walk(dir);
    return total;
}

const mib = (b: number) => `${Math.round(b / 2 ** 20)}Mi`;

/** Why the kubelet would evict the pod now, in its own words; undefined when within its limits. */
export function evictionReason(limits: DiskLimits): string | undefined {
    let total = 0;
    for (const d of limits.emptyDirs) {
        const used = usageBytes(d.path);
        total += used;
        if (d.limitBytes !== undefined && used > d.limitBytes) return `Usage of EmptyDir volume "${d.name}" exceeds the limit "${mib(d.limitBytes)}" (${mib(used)} used)`;
    }
    if (limits.podLimitBytes !== undefined && total > limits.podLimitBytes) return `Pod ephemeral local storage usage exceeds the total limit of containers ${mib(limits.podLimitBytes)} (${mib(total)} used)`;
    return undefined;
}

/** Empties an evicted pod's emptyDirs: the pod its controller makes next gets new, empty ones. */
export function emptyDirs(limits: DiskLimits): void {
    for (const d of limits.emptyDirs) {
        for (const e of fs.existsSync(d.path) ? fs.readdirSync(d.path) : []) fs.rmSync(path.join(d.path, e), { recursive: true, force: true });
    }
}
