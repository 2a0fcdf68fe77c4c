// scripts/local/eviction.ts through the supervisor: a pod that outgrows an emptyDir's sizeLimit or its
// ephemeral-storage limit is evicted as the kubelet evicts it, and starts again with empty emptyDirs.
// Real processes writing real files (a short check interval instead of the kubelet's 10 s).
import assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { diskLimitsOf, usageBytes } from "../../scripts/local/eviction";
import { sleep, Supervisor } from "../../scripts/local/supervisor";

/** Writes `mib` MiB into `dir`/fill, then idles. */
const fill = (dir: string, mib: number) => ({
    argv: ["/usr/bin/env", "python3", "-c", `import os, time\nwith open(os.path.join(${JSON.stringify(dir)}, "fill"), "wb") as f:\n    f.write(os.urandom(${mib} * 1024 * 1024))\n    f.flush()\n    os.fsync(f.fileno())\nprint("written", flush=True)\ntime.sleep(600)`],
    env: { PATH: "/usr/bin:/bin" },
    cwd: "/",
});

describe("local tier: pods evicted over their local storage limits", function () {
    this.timeout(60_000);
    let tmp: string;
    let supervisor: Supervisor;
    const dir = (name: string) => {
        const d = path.join(tmp, name);
        fs.mkdirSync(d, { recursive: true });
        return d;
    };
    const pod = (sizeLimit: string | undefined, ephemeral: string | undefined) => ({
        containers: [{ name: "c", image: "x", ...(ephemeral ? { resources: { limits: { "ephemeral-storage": ephemeral } } } : {}) }],
        volumes: [{ name: "tmp", emptyDir: sizeLimit ? { sizeLimit } : {} }, { name: "config", configMap: { name: "c" } }],
    });

    before(() => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "eviction-spec-"));
        supervisor = new Supervisor(path.join(tmp, "logs"), path.join(tmp, "pids"));
    });
    after(async () => {
        await supervisor.stopAll();
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("reads a pod's emptyDirs with their sizeLimits and its ephemeral-storage limit", () => {
        assert.deepEqual(diskLimitsOf(pod("16Mi", "64Mi"), { tmp: "/t", config: "/c" }), { emptyDirs: [{ name: "tmp", path: "/t", limitBytes: 16 * 2 ** 20 }], podLimitBytes: 64 * 2 ** 20 });
        assert.deepEqual(diskLimitsOf(pod(undefined, undefined), { tmp: "/t" }), { emptyDirs: [{ name: "tmp", path: "/t" }] });
    });

    it("evicts a pod whose emptyDir outgrows its sizeLimit, empties it, and starts the pod again", async () => {
        const d = dir("over-size-limit");
        const m = supervisor.start("over-size-limit", fill(d, 24), { disk: diskLimitsOf(pod("8Mi", "1Gi"), { tmp: d }), diskCheckMs: 200, graceMs: 1000 });
        const firstPid = m.pid;
        for (let i = 0; i < 200 && m.restarts === 0; i++) await sleep(20);
        // Emptied at the eviction, before the next start (which follows the restart back-off, 1 s).
        assert.ok(!fs.existsSync(path.join(d, "fill")), "the evicted pod's emptyDir was not emptied");
        assert.equal(m.lastTermination?.reason, "Evicted", JSON.stringify(m.lastTermination));
        assert.match(m.lastTermination!.message!, /^Usage of EmptyDir volume "tmp" exceeds the limit "8Mi" \(24Mi used\)$/);
        assert.match(fs.readFileSync(m.logFile, "utf8"), /exited \(SIGKILL\) Evicted: Usage of EmptyDir volume "tmp"/);
        for (let i = 0; i < 50 && m.pid === firstPid; i++) await sleep(100);
        assert.notEqual(m.pid, firstPid, "not started again");
        await m.stop();
    });

    it("evicts a pod whose emptyDirs together outgrow its ephemeral-storage limit", async () => {
        const d = dir("over-pod-limit");
        const m = supervisor.start("over-pod-limit", fill(d, 24), { disk: diskLimitsOf(pod(undefined, "16Mi"), { tmp: d }), diskCheckMs: 200, graceMs: 1000 });
        for (let i = 0; i < 200 && m.restarts === 0; i++) await sleep(100);
        assert.equal(m.lastTermination?.reason, "Evicted");
        assert.match(m.lastTermination!.message!, /^Pod ephemeral local storage usage exceeds the total limit of containers 16Mi/);
        await m.stop();
    });

    it("leaves a pod within its limits running, its emptyDir as written", async () => {
        const d = dir("within");
        const m = supervisor.start("within", fill(d, 4), { disk: diskLimitsOf(pod("16Mi", "64Mi"), { tmp: d }), diskCheckMs: 200, graceMs: 1000 });
        for (let i = 0; i < 100 && !fs.readFileSync(m.logFile, "utf8").includes("written"); i++) await sleep(100);
        await sleep(1000);
        assert.equal(m.restarts, 0);
        assert.equal(m.lastTermination, undefined);
        assert.ok(usageBytes(d) >= 4 * 2 ** 20, `${usageBytes(d)} bytes`);
        await m.stop();
    });
});
