// scripts/local/cgroups.ts through the supervisor: the kernel enforces a container's limits on the
// processes the local tier starts, as it does under a kubelet. Real cgroups, real processes (needs root;
// elsewhere the specs are skipped with the reason).
import assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Cgroups, limitsOf } from "../../scripts/local/cgroups";
import { sleep, Supervisor } from "../../scripts/local/supervisor";

const python = (code: string) => ({ argv: ["/usr/bin/env", "python3", "-c", code], env: { PATH: "/usr/bin:/bin" }, cwd: "/" });
/** Touches `mib` MiB, one page at a time, so the memory is really used; then idles. */
const allocate = (mib: number) => python(`import time\nx = bytearray(${mib} * 1024 * 1024)\nx[::4096] = b"a" * len(x[::4096])\nprint("allocated", flush=True)\ntime.sleep(600)`);

describe("local tier: container limits enforced by cgroups", function () {
    this.timeout(60_000);
    let tmp: string;
    let cgroups: Cgroups;
    let supervisor: Supervisor;

    before(function () {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cgroups-spec-"));
        const opened = Cgroups.open(tmp);
        if ("unavailable" in opened) {
            console.log(`      skipped: ${opened.unavailable}`);
            this.skip();
        }
        cgroups = opened as Cgroups;
        supervisor = new Supervisor(path.join(tmp, "logs"), path.join(tmp, "pids"), cgroups);
    });
    after(async () => {
        await supervisor?.stopAll();
        cgroups?.remove();
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("reads a container's memory and CPU limits as numbers", () => {
        assert.deepEqual(limitsOf({ resources: { limits: { memory: "1536Mi", cpu: "1500m", "ephemeral-storage": "1Gi" } } }), { memoryBytes: 1536 * 2 ** 20, cpuMillis: 1500 });
        assert.deepEqual(limitsOf({ resources: { limits: { cpu: "2" } } }), { cpuMillis: 2000 });
        assert.deepEqual(limitsOf({}), {});
    });

    it("OOM-kills a process over its memory limit, reports OOMKilled, and restarts it (restartPolicy Always)", async () => {
        const m = supervisor.start("over-limit", allocate(200), { limits: { memoryBytes: 64 * 2 ** 20 }, graceMs: 1000 });
        const firstPid = m.pid;
        for (let i = 0; i < 100 && m.restarts === 0; i++) await sleep(100);
        assert.equal(m.lastTermination?.reason, "OOMKilled", JSON.stringify(m.lastTermination));
        assert.equal(m.lastTermination?.signal, "SIGKILL");
        assert.ok(m.cgroup!.oomKills() >= 1);
        assert.match(fs.readFileSync(m.logFile, "utf8"), /exited \(SIGKILL\) OOMKilled: over its memory limit/);
        for (let i = 0; i < 50 && m.pid === firstPid; i++) await sleep(100);
        assert.notEqual(m.pid, firstPid, "not restarted");
        await m.stop();
    });

    it("leaves a process within its limit running, its memory charged to its cgroup", async () => {
        const m = supervisor.start("within-limit", allocate(32), { limits: { memoryBytes: 128 * 2 ** 20 }, graceMs: 1000 });
        for (let i = 0; i < 100 && !fs.readFileSync(m.logFile, "utf8").includes("allocated"); i++) await sleep(100);
        await sleep(500);
        assert.equal(m.restarts, 0);
        assert.equal(m.cgroup!.oomKills(), 0);
        assert.ok(m.cgroup!.memoryBytes() >= 32 * 2 ** 20, `${m.cgroup!.memoryBytes()} bytes charged`);
        await m.stop();
    });

    it("runs a process as another user inside its cgroup (PostgreSQL runs as `postgres`)", async () => {
        const m = supervisor.start("as-nobody", python("import time; time.sleep(600)"), { uid: 65534, gid: 65534, limits: { memoryBytes: 64 * 2 ** 20 }, graceMs: 1000 });
        let status = "";
        for (let i = 0; i < 50 && !/python/.test(status); i++) {
            await sleep(100);
            status = fs.readFileSync(`/proc/${m.pid}/status`, "utf8");
        }
        assert.match(status, /^Name:\s+python/m, "the program replaced the wrapper");
        assert.match(status, /^Uid:\s+65534\s+65534/m);
        assert.match(status, /^Groups:\s*$/m, "supplementary groups are cleared");
        const procs = fs.readFileSync(m.cgroup!.procsFiles[0], "utf8").split("\n").map(Number);
        assert.ok(procs.includes(m.pid), `pid ${m.pid} not in ${procs}`);
        await m.stop();
    });

    it("throttles a busy process to its CPU limit", async () => {
        const m = supervisor.start("busy", python("while True: pass"), { limits: { cpuMillis: 100 }, graceMs: 1000 });
        await sleep(1500);
        assert.ok(m.cgroup!.throttled() > 0, "the CFS quota never held it back");
        await m.stop();
    });

    it("reports a Job container killed over its limit as OOMKilled", async () => {
        await assert.rejects(
            supervisor.run("job-over-limit", python('x = bytearray(200 * 1024 * 1024); x[::4096] = b"a" * len(x[::4096])'), { limits: { memoryBytes: 64 * 2 ** 20 } }),
            /job-over-limit failed \(OOMKilled, SIGKILL\) after 1 attempt/,
        );
    });
});
