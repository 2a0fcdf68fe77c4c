// One launcher per data directory (scripts/local/lock.ts): the lock is exclusive even when launchers
// start at the same instant, a running launcher's lock is never taken, and a stale one (its process
// gone, or its PID reused by another process) is. Launchers are real node processes here.
import assert from "assert/strict";
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { claimLauncherLock, LAUNCHER_LOCK, processIdentity } from "../../scripts/local/lock";
import { ROOT } from "../harness";

/**
 * A launcher in another process: waits until `atMs` (so several start claiming at the same instant),
 * claims the lock on `dir`, prints `won <pid>` or `lost <message>`, and holds it for `holdMs`.
 */
function launcher(dir: string, atMs: number, holdMs: number): { child: ChildProcess; result: Promise<string> } {
    const script = `
const { claimLauncherLock } = require(${JSON.stringify(path.join(ROOT, "scripts/local/lock.ts"))});
while (Date.now() < ${atMs}) {}
let line;
try { claimLauncherLock(${JSON.stringify(dir)}); line = "won " + process.pid; } catch (e) { line = "lost " + e.message; }
console.log(line);
setTimeout(() => {}, ${holdMs});
`;
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", script], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    const result = new Promise<string>((resolve) => {
        let out = "";
        child.stdout!.on("data", (d) => {
            out += d;
            if (out.includes("\n")) resolve(out.trim());
        });
        child.once("exit", () => resolve(out.trim()));
    });
    return { child, result };
}

describe("npm run local: one launcher per data directory", function () {
    this.timeout(60_000);
    let tmp: string;
    const children: ChildProcess[] = [];
    before(() => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "local-lock-"));
    });
    after(() => {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
        fs.rmSync(tmp, { recursive: true, force: true });
    });
    const dirOf = (name: string) => {
        const d = path.join(tmp, name);
        fs.mkdirSync(d);
        return d;
    };
    const lockOf = (dir: string) => fs.readFileSync(path.join(dir, LAUNCHER_LOCK), "utf8");

    it("writes this process's PID and identity, refuses a second platform in the same process, and releases", () => {
        const dir = dirOf("self");
        const lock = claimLauncherLock(dir);
        assert.throws(() => claimLauncherLock(dir), /this process already runs a platform on/);
        assert.equal(lockOf(dir), `${process.pid}\n${processIdentity("self")}\n`);
        lock.release();
        assert.ok(!fs.existsSync(path.join(dir, LAUNCHER_LOCK)));
        claimLauncherLock(dir).release();
        assert.deepEqual(fs.readdirSync(dir), [], "no temporary file is left behind");
    });

    it("lets exactly one of several launchers starting at the same instant have the directory", async () => {
        const dir = dirOf("race");
        const at = Date.now() + 6000; // after every child has loaded ts-node
        const runs = Array.from({ length: 6 }, () => launcher(dir, at, 4000));
        children.push(...runs.map((r) => r.child));
        const results = await Promise.all(runs.map((r) => r.result));
        const won = results.filter((r) => r.startsWith("won "));
        assert.equal(won.length, 1, results.join("\n"));
        const winner = Number(won[0].split(" ")[1]);
        assert.equal(Number(lockOf(dir).split("\n")[0]), winner);
        for (const r of results.filter((x) => x.startsWith("lost "))) assert.match(r, new RegExp(`another launcher \\(pid ${winner}\\) is already running on `));
    });

    it("refuses while a launcher runs, naming its PID, and leaves its lock alone", async () => {
        const dir = dirOf("running");
        const first = launcher(dir, 0, 30_000);
        children.push(first.child);
        assert.match(await first.result, /^won /);
        const before = lockOf(dir);
        assert.throws(() => claimLauncherLock(dir), new RegExp(`another launcher \\(pid ${first.child.pid}\\) is already running on ${dir}`));
        assert.equal(lockOf(dir), before);
        first.child.kill("SIGKILL");
        await new Promise((r) => first.child.once("exit", r));
        // Killed without releasing it: the next launcher takes the stale lock over.
        claimLauncherLock(dir).release();
    });

    it("takes over the lock of a launcher that is gone, and one whose PID another process now has", async () => {
        const gone = dirOf("gone");
        const dead = spawn("/bin/true");
        await new Promise((r) => dead.once("exit", r));
        fs.writeFileSync(path.join(gone, LAUNCHER_LOCK), `${dead.pid}\n${processIdentity("self")}\n`);
        claimLauncherLock(gone).release();

        const reused = dirOf("reused");
        const other = spawn("/bin/sleep", ["30"]);
        children.push(other);
        // The lock names other's PID, but the launcher that wrote it started at another time.
        const [boot] = String(processIdentity(other.pid!)).split(" ");
        fs.writeFileSync(path.join(reused, LAUNCHER_LOCK), `${other.pid}\n${boot} 1\n`);
        const lock = claimLauncherLock(reused);
        assert.equal(Number(lockOf(reused).split("\n")[0]), process.pid);
        lock.release();
        // A lock without an identity (an earlier version wrote only the PID) holds while the PID lives.
        fs.writeFileSync(path.join(reused, LAUNCHER_LOCK), `${other.pid}\n`);
        assert.throws(() => claimLauncherLock(reused), new RegExp(`pid ${other.pid}`));
        other.kill("SIGKILL");
    });
});
