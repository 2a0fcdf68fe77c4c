// (0) `npm run local` as a user runs it, on its own data directory (launcher-e2e under e2eDataRoot(); the shared
// platform of the other specs is not touched): SIGTERM or SIGINT sent to the npm process's PID stops
// everything the launcher started, and a second `npm run local` on the same directory, while the first
// is starting or running, says that one is running and exits non-zero without disturbing it.
import assert from "assert/strict";
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ROOT } from "../../scripts/lib/program";
import { LAUNCHER_LOCK } from "../../scripts/local/lock";
import { httpStatus, sleep, waitUntil } from "../../scripts/local/supervisor";
import { ensureLocalTools } from "../../scripts/local/tools";
import { E2E_PARTS, e2eDataRoot } from "./fixture";

const DIR = path.join(e2eDataRoot(), "launcher-e2e");

interface Launch {
    child: ChildProcess;
    output: () => string;
    exited: Promise<number | null>;
}

/** `npm run local -- --dir DIR` as a user starts it (npm's own PID is the child's). */
function npmRunLocal(): Launch {
    const child = spawn("npm", ["run", "local", "--", "--dir", DIR], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FORCE_COLOR: "0" } });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    // npm's own exit (its output pipes stay open as long as anything it started holds them).
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    return { child, output: () => out, exited };
}

/** The PIDs the launcher recorded: its own (launcher.pid) and each process group it started (pids/). */
function recorded(): Record<string, number> {
    const out: Record<string, number> = {};
    const lock = path.join(DIR, LAUNCHER_LOCK);
    if (fs.existsSync(lock)) out.launcher = Number(fs.readFileSync(lock, "utf8").split("\n")[0]);
    const pids = path.join(DIR, "pids");
    for (const f of fs.existsSync(pids) ? fs.readdirSync(pids) : []) out[f.replace(/\.pid$/, "")] = Number(fs.readFileSync(path.join(pids, f), "utf8"));
    return out;
}

/** Live processes (zombies excepted) that are one of `pids`, in one of their process groups, or mention DIR on their command line. */
function leftovers(pids: number[]): string[] {
    const want = new Set(pids);
    const out: string[] = [];
    for (const e of fs.readdirSync("/proc")) {
        const pid = Number(e);
        if (!Number.isInteger(pid) || pid === process.pid) continue;
        try {
            const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
            const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
            if (state === "Z" || state === "X") continue;
            const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
            if (want.has(pid) || want.has(Number(pgrp)) || cmd.includes(DIR)) out.push(`${pid} (group ${pgrp}): ${cmd.slice(0, 120)}`);
        } catch {
            /* exited meanwhile */
        }
    }
    return out;
}

const alive = (pid: number) => {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
};

/** The login line the launcher prints: UI URL, user, password. */
function login(output: string): { url: string; headers: Record<string, string> } {
    const m = /UI and API\s+(\S+)\s+user (\S+)\s+password (\S+)/.exec(output);
    assert.ok(m, `no login line in:\n${output}`);
    return { url: m[1], headers: { authorization: `Basic ${Buffer.from(`${m[2]}:${m[3]}`).toString("base64")}` } };
}

describe("e2e (0): npm run local stops on SIGTERM/SIGINT to npm, and refuses a second launcher on its directory", function () {
    this.timeout(1_800_000); // the first test run installs everything
    const launches: Launch[] = [];
    /** Every PID the launchers recorded, so that whatever fails, all of it is stopped. */
    const seen = new Set<number>();
    const launchers = new Set<number>();
    const remember = () => {
        const r = recorded();
        for (const [name, pid] of Object.entries(r)) {
            seen.add(pid);
            if (name === "launcher") launchers.add(pid);
        }
        return r;
    };

    before(function () {
        ensureLocalTools(E2E_PARTS);
        fs.rmSync(DIR, { recursive: true, force: true });
    });

    after(async function () {
        this.timeout(600_000);
        // Whatever happened: npm first, then a launcher its signal did not reach, then anything left, by PID.
        for (const l of launches) if (l.child.exitCode === null && l.child.signalCode === null) l.child.kill("SIGTERM");
        await Promise.race([Promise.all(launches.map((l) => l.exited)), sleep(180_000)]);
        for (const pid of launchers) if (alive(pid)) process.kill(pid, "SIGTERM");
        for (let i = 0; i < 1800 && [...launchers].some(alive); i++) await sleep(100);
        for (const pid of seen) {
            for (const target of [-pid, pid]) {
                try {
                    process.kill(target, "SIGKILL");
                } catch {
                    /* gone */
                }
            }
        }
    });

    /** Starts npm run local, checks a second launcher is refused while it starts and once it is up. */
    async function startChecked(): Promise<{ first: Launch; ui: { url: string; headers: Record<string, string> } }> {
        const first = npmRunLocal();
        launches.push(first);
        const t0 = Date.now();
        // The lock is claimed before anything else: a second launcher while the first is still starting.
        await waitUntil("the first launcher's lock", async () => fs.existsSync(path.join(DIR, LAUNCHER_LOCK)), 120_000, first.output);
        const starting = remember().launcher;
        await refusedWhileRunning(starting, first);

        await waitUntil("MLflow is up", async () => /MLflow is up/.test(first.output()) || first.child.exitCode !== null, 600_000, first.output);
        assert.match(first.output(), /MLflow is up/, first.output());
        console.log(`      npm run local: up after ${Math.round((Date.now() - t0) / 1000)} s`);
        const running = remember();
        assert.equal(running.launcher, starting, "the lock still names the first launcher");
        // A PID file per container the node runs (`<pod>-<container>`), and for the add-ons the launcher runs.
        const expected = { postgres: /^mlflow-postgres-0-postgres$/, minio: /^mlflow-minio-0-minio$/, tracking: /^mlflow-server-[a-z0-9]+-[a-z0-9]+-mlflow$/, ingress: /^ingress-nginx$/, prometheus: /^prometheus$/ };
        for (const [what, re] of Object.entries(expected)) assert.ok(Object.keys(running).some((n) => re.test(n)), `no PID file for ${what}: ${JSON.stringify(running)}`);
        const ui = login(first.output());
        assert.equal(await httpStatus(`${ui.url}/health`, ui.headers), 200);

        // Once it is up: a second launcher is refused, and the first one's processes, lock and data stay.
        await refusedWhileRunning(running.launcher, first);
        assert.deepEqual(recorded(), running, "the second launcher changed the first one's PID files");
        for (const [name, pid] of Object.entries(running)) assert.ok(alive(pid), `${name} (pid ${pid}) is gone after the second launcher`);
        assert.equal(await httpStatus(`${ui.url}/health`, ui.headers), 200, "the first platform's /health after the second launcher");
        return { first, ui };
    }

    async function refusedWhileRunning(pid: number, first: Launch): Promise<void> {
        const second = npmRunLocal();
        launches.push(second);
        const code = await second.exited;
        await sleep(200); // the rest of its output
        assert.notEqual(code, 0, `a second npm run local on the same directory exited 0:\n${second.output()}`);
        assert.match(second.output(), new RegExp(`another launcher \\(pid ${pid}\\) is already running on ${DIR.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`), second.output());
        assert.doesNotMatch(second.output(), /\[local\] (stopped|postgres|job)/, "the second launcher started or stopped something");
        assert.equal(first.child.exitCode, null, `the first launcher exited:\n${first.output()}`);
    }

    /** Signals npm's PID (as `kill -<signal> <npm pid>` does) and checks that nothing the launcher started is left. */
    async function stopsOn(signal: NodeJS.Signals, first: Launch): Promise<void> {
        const pids = remember();
        first.child.kill(signal);
        const code = await Promise.race([first.exited, sleep(300_000).then(() => "still running")]);
        assert.notEqual(code, "still running", `npm did not exit within 5 minutes of ${signal}`);
        await sleep(500); // the launcher's last lines
        assert.match(first.output(), new RegExp(`\\[local\\] ${signal}: stopping`), `the launcher never got ${signal}:\n${first.output()}`);
        assert.match(first.output(), /\[local\] stopped/);
        // Killed workers may linger as zombies until they are reaped: give them a moment.
        let left: string[] = [];
        for (let i = 0; i < 100; i++) {
            left = leftovers(Object.values(pids));
            if (!left.length) break;
            await sleep(100);
        }
        assert.deepEqual(left, [], `left running after ${signal} to npm (recorded ${JSON.stringify(pids)})`);
        assert.ok(!fs.existsSync(path.join(DIR, LAUNCHER_LOCK)), "the lock is released");
        assert.deepEqual(fs.readdirSync(path.join(DIR, "pids")), [], "every PID file is removed");
    }

    it("on a fresh directory: SIGTERM to the npm process stops every process the launcher started", async () => {
        const { first } = await startChecked();
        await stopsOn("SIGTERM", first);
    });

    it("on the same directory again: SIGINT to the npm process stops everything too", async () => {
        const { first } = await startChecked();
        await stopsOn("SIGINT", first);
    });
});
