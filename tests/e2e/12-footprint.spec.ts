// (12) Each workload's steady memory against the limit its manifest sets: after every earlier spec has
// used the platform, the proportional set size (PSS, shared pages split between the processes that map
// them) of each workload's whole process tree must fit in its container's memory limit, or the pod
// would be OOM-killed on a cluster. Measured here on top of what the cgroups enforce (as root, an
// over-limit process is OOM-killed during the run): a tree near its limit is caught even where it is not.
import assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import { quantityOrNaN } from "../../components/fields";
import { KSERVE_CONTAINER } from "../../components/modelServing/runtime";
import type { LocalPlatform } from "../../scripts/local/platform";
import { workloadOf } from "../../scripts/local/workloads";
import { ARTIFACTS, platformUp, wineExample } from "./fixture";

/** The process and all its descendants, from the parent PIDs in /proc/<pid>/stat (field 4). */
function processTree(root: number): number[] {
    const children = new Map<number, number[]>();
    for (const d of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
        try {
            const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
            const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
            children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
        } catch {
            /* gone meanwhile */
        }
    }
    const out: number[] = [];
    for (const queue = [root]; queue.length; ) {
        const pid = queue.shift()!;
        out.push(pid);
        queue.push(...(children.get(pid) ?? []));
    }
    return out;
}

/**
 * Sum of Pss over a process tree, bytes (smaps_rollup). A tree, not a process group: PostgreSQL's
 * children each start a session of their own.
 */
function treePss(root: number): { bytes: number; processes: number } {
    let kb = 0;
    let processes = 0;
    for (const pid of processTree(root)) {
        try {
            kb += Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? 0);
            processes++;
        } catch {
            /* gone meanwhile */
        }
    }
    return { bytes: kb * 1024, processes };
}

describe("e2e (12): each workload's memory fits its limit", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;
    const report: Record<string, { pssMiB: number; limitMiB: number; processes: number }> = {};

    before(async () => {
        p = await platformUp();
        await wineExample(p);
    });

    after(() => {
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        fs.writeFileSync(path.join(ARTIFACTS, "footprint.json"), JSON.stringify(report, null, 2) + "\n");
    });

    const limitOf = (container: object) => quantityOrNaN((container as { resources?: { limits?: Record<string, string> } }).resources?.limits?.memory ?? "NaN");
    const check = (name: string, pid: number, limit: number) => {
        const { bytes, processes } = treePss(pid);
        report[name] = { pssMiB: Math.round(bytes / 2 ** 20), limitMiB: Math.round(limit / 2 ** 20), processes };
        assert.ok(processes > 0, `${name}: process ${pid} is gone`);
        assert.ok(bytes < limit, `${name}: ${processes} processes hold ${Math.round(bytes / 2 ** 20)} MiB, above the ${Math.round(limit / 2 ** 20)} MiB limit`);
    };

    for (const [name, kind, component] of [
        ["tracking", "Deployment", "trackingServer"],
        ["postgres", "StatefulSet", "database"],
        ["minio", "StatefulSet", "objectStore"],
        ["controller", "Deployment", "deployController"],
    ] as const) {
        it(`${name} (${component}) stays below its container's memory limit`, () => {
            check(name, p.processes[name].pid, limitOf(workloadOf(p.stack, kind, component).container));
        });
    }

    it("each model server stays below the ServingRuntime's memory limit", async () => {
        await p.serving!.waitForModel("wine-quality", 600_000);
        const runtime = (p.stack.find("ServingRuntime")[0] as any).spec.containers.find((c: any) => c.name === KSERVE_CONTAINER);
        for (const [isvc, served] of p.serving!.served) check(`model server ${isvc}`, served.process.pid, limitOf(runtime));
    });
});
