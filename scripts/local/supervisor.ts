// Starts, restarts and stops the local platform's processes, as a kubelet would its containers: each in
// its own process group (so a server's children go with it), output appended to .local/logs/<name>.log,
// restartPolicy Always honoured with a capped back-off, the manifest's preStop hook run before SIGTERM,
// and SIGKILL after the termination grace period; with cgroups (./cgroups.ts), each container's memory
// and CPU limits enforced by the kernel and an OOM kill reported as OOMKilled. Everything is addressed by PID (process group id),
// never by name; a PID file per process lets the next run stop what a killed launcher left behind.
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { Cgroups, ContainerCgroup, ContainerLimits, joinCgroup } from "./cgroups";
import { DISK_CHECK_MS, DiskLimits, emptyDirs, evictionReason } from "./eviction";
import type { ProcessSpec } from "./mapping";

export interface StartOptions {
    /** Run as this user (numeric), e.g. PostgreSQL as Debian's `postgres` when the launcher is root. */
    uid?: number;
    gid?: number;
    /** The pod's terminationGracePeriodSeconds, in ms. Default 30 s. */
    graceMs?: number;
    /** The container's preStop exec hook, run (and waited for, within the grace period) before SIGTERM. */
    preStop?: ProcessSpec;
    /** The container's limits, enforced when the supervisor has cgroups. */
    limits?: ContainerLimits;
    /** The pod's emptyDirs and ephemeral-storage limit: over them, the pod is evicted and started again. */
    disk?: DiskLimits;
    /** How often the disk limits are checked (default: the kubelet's 10 s). */
    diskCheckMs?: number;
    /** The pod's restartPolicy: Always (default) restarts any exit, OnFailure a non-zero one, Never none. */
    restartPolicy?: "Always" | "OnFailure" | "Never";
}

/** How the last incarnation ended, as a container status's lastState.terminated says it. */
export interface Termination {
    reason: "OOMKilled" | "Evicted" | "Error" | "Completed";
    /** The eviction message, as the pod's status.message says it. */
    message?: string;
    exitCode: number | null;
    signal: string | null;
}

export interface Managed {
    readonly name: string;
    /** PID of the current incarnation (it changes on restart). */
    readonly pid: number;
    readonly restarts: number;
    readonly logFile: string;
    /** How the previous incarnation ended (undefined before the first exit). */
    readonly lastTermination?: Termination;
    /** The container's cgroup, when limits are enforced. */
    readonly cgroup?: ContainerCgroup;
    /** Whether an incarnation is running now (false while it waits to be restarted, and once it is done). */
    readonly running: boolean;
    /** When the current (or last) incarnation started. */
    readonly startedAt?: Date;
    /** Set once the process exited and its restartPolicy does not start it again. */
    readonly finished?: Termination;
    /** Resolves once the current incarnation has exited. */
    exited(): Promise<void>;
    /** Kills the current incarnation (a failed liveness probe); the restartPolicy decides what follows. */
    kill(): void;
    /** Stops it for good: preStop, SIGTERM, SIGKILL after `graceMs` (default: its own grace period). */
    stop(graceMs?: number): Promise<void>;
}

const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];

export class Supervisor {
    private readonly managed: ManagedProcess[] = [];

    /** `cgroups`: where containers' limits are enforced (none: not enforced). */
    constructor(
        readonly logDir: string,
        readonly pidDir: string,
        readonly cgroups?: Cgroups,
    ) {
        fs.mkdirSync(logDir, { recursive: true });
        fs.mkdirSync(pidDir, { recursive: true });
    }

    /** Starts a long-running process (a Deployment's or StatefulSet's container). */
    start(name: string, spec: ProcessSpec, opts: StartOptions = {}): Managed {
        const m = new ManagedProcess(name, spec, opts, this);
        this.managed.push(m);
        m.launch();
        return m;
    }

    /**
     * Runs a Job's container to completion: resolves on exit 0, retries a failure up to `retries` times
     * (the Job's backoffLimit) and then rejects with the end of its log.
     */
    async run(name: string, spec: ProcessSpec, opts: { retries?: number; uid?: number; gid?: number; retryDelayMs?: number; limits?: ContainerLimits } = {}): Promise<void> {
        const retries = opts.retries ?? 0;
        const logFile = path.join(this.logDir, `${name}.log`);
        const cg = this.cgroupFor(name, opts.limits);
        try {
            await this.runAttempts(name, spec, opts, retries, logFile, cg);
        } finally {
            cg?.remove();
        }
    }

    private async runAttempts(name: string, spec: ProcessSpec, opts: { uid?: number; gid?: number; retryDelayMs?: number }, retries: number, logFile: string, cg?: ContainerCgroup): Promise<void> {
        for (let attempt = 0; ; attempt++) {
            const ooms = cg?.oomKills() ?? 0;
            const code = await new Promise<number | string>((resolve) => {
                const out = fs.openSync(logFile, "a");
                const a = spawnArgs(spec, opts, cg);
                const child = spawn(a.command, a.args, { ...a.options, stdio: ["ignore", out, out], detached: true });
                fs.closeSync(out);
                child.once("error", (e) => resolve(e.message));
                child.once("exit", (c, sig) => resolve(c ?? String(sig)));
            });
            if (code === 0) return;
            const reason = cg && cg.oomKills() > ooms ? "OOMKilled, " : "";
            if (reason) fs.appendFileSync(logFile, `--- OOMKilled: over its memory limit\n`);
            if (attempt >= retries) throw new Error(`${name} failed (${reason}${code}) after ${attempt + 1} attempt(s); end of ${logFile}:\n${tail(logFile)}`);
            await sleep(opts.retryDelayMs ?? 1000);
        }
    }

    /** @internal A container's cgroup, when limits are given and enforced. */
    cgroupFor(name: string, limits?: ContainerLimits): ContainerCgroup | undefined {
        if (!this.cgroups || !limits || (!limits.memoryBytes && !limits.cpuMillis)) return undefined;
        return this.cgroups.forContainer(name, limits);
    }

    /** Stops every process this supervisor started, the last started first. */
    async stopAll(): Promise<void> {
        for (const m of [...this.managed].reverse()) await m.stop();
    }

    /** @internal */
    pidFile(name: string): string {
        return path.join(this.pidDir, `${name}.pid`);
    }

    /**
     * Stops processes a previous launcher left running (it was killed before it could stop them): each
     * PID file names a process group leader; it is signalled only if its command line still mentions
     * `marker` (the .local directory), so a recycled PID is never hit.
     */
    async stopLeftovers(marker: string): Promise<string[]> {
        const stopped: string[] = [];
        for (const f of fs.readdirSync(this.pidDir).filter((n) => n.endsWith(".pid"))) {
            const pid = Number(fs.readFileSync(path.join(this.pidDir, f), "utf8").trim());
            fs.rmSync(path.join(this.pidDir, f), { force: true });
            if (!Number.isInteger(pid) || pid <= 1 || !alive(pid) || !cmdline(pid).includes(marker)) continue;
            signalGroup(pid, "SIGTERM");
            for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
            if (alive(pid)) signalGroup(pid, "SIGKILL");
            stopped.push(`${f.replace(/\.pid$/, "")} (pid ${pid})`);
        }
        return stopped;
    }
}

class ManagedProcess implements Managed {
    private child?: ChildProcess;
    private exitPromise: Promise<void> = Promise.resolve();
    private stopping = false;
    restarts = 0;
    private backoff = 0;
    readonly logFile: string;
    lastTermination?: Termination;
    cgroup?: ContainerCgroup;
    private diskTimer?: NodeJS.Timeout;
    private evicted?: string;
    startedAt?: Date;
    finished?: Termination;

    constructor(
        readonly name: string,
        private readonly spec: ProcessSpec,
        private readonly opts: StartOptions,
        private readonly supervisor: Supervisor,
    ) {
        this.logFile = path.join(supervisor.logDir, `${name}.log`);
        this.cgroup = supervisor.cgroupFor(name, opts.limits);
    }

    get pid(): number {
        return this.child?.pid ?? -1;
    }

    launch(): void {
        const out = fs.openSync(this.logFile, "a");
        fs.writeSync(out, `--- ${new Date().toISOString()} start ${this.spec.argv.join(" ")}\n`);
        const ooms = this.cgroup?.oomKills() ?? 0;
        const a = spawnArgs(this.spec, this.opts, this.cgroup);
        const child = spawn(a.command, a.args, {
            ...a.options,
            stdio: ["ignore", out, out],
            // Its own process group: Ctrl-C in the terminal reaches only the launcher, which then stops
            // each workload in order, and a stop reaches the server's worker processes too.
            detached: true,
        });
        fs.closeSync(out);
        this.child = child;
        if (child.pid !== undefined) fs.writeFileSync(this.supervisor.pidFile(this.name), `${child.pid}\n`);
        const startedAt = Date.now();
        this.startedAt = new Date(startedAt);
        this.watchDisk(child);
        this.exitPromise = new Promise((resolve) => {
            child.once("error", (e) => {
                fs.appendFileSync(this.logFile, `--- cannot start: ${e.message}\n`);
                // Not started again whatever the policy: the program is missing or not executable.
                this.lastTermination = this.finished = { reason: "Error", message: e.message, exitCode: 128, signal: null };
                resolve();
            });
            child.once("exit", (code, signal) => {
                clearInterval(this.diskTimer);
                const oom = this.cgroup !== undefined && this.cgroup.oomKills() > ooms;
                const evicted = this.evicted;
                this.evicted = undefined;
                this.lastTermination = { reason: evicted ? "Evicted" : oom ? "OOMKilled" : code === 0 ? "Completed" : "Error", exitCode: code, signal, ...(evicted ? { message: evicted } : {}) };
                const why = evicted ? ` Evicted: ${evicted}` : oom ? " OOMKilled: over its memory limit" : "";
                fs.appendFileSync(this.logFile, `--- ${new Date().toISOString()} exited (${code ?? signal})${why}\n`);
                if (evicted && this.opts.disk) emptyDirs(this.opts.disk);
                const policy = this.opts.restartPolicy ?? "Always";
                if (!this.stopping && (policy === "Never" || (policy === "OnFailure" && code === 0))) this.finished = this.lastTermination;
                resolve();
                if (this.stopping || this.finished) return;
                // A process that ran for a minute starts its back-off afresh, as the kubelet's does; the
                // restart count goes on (a container status's restartCount never goes down).
                if (Date.now() - startedAt > 60_000) this.backoff = 0;
                const delay = BACKOFF_MS[Math.min(this.backoff, BACKOFF_MS.length - 1)];
                this.backoff++;
                this.restarts++;
                setTimeout(() => {
                    if (!this.stopping) this.launch();
                }, delay).unref();
            });
        });
    }

    exited(): Promise<void> {
        return this.exitPromise;
    }

    get running(): boolean {
        const c = this.child;
        return c !== undefined && c.pid !== undefined && c.exitCode === null && c.signalCode === null;
    }

    kill(): void {
        if (this.running) signalGroup(this.child!.pid!, "SIGKILL");
    }

    /** Evicts the pod (SIGKILL to its processes) once it outgrows its local storage limits. */
    private watchDisk(child: ChildProcess): void {
        const disk = this.opts.disk;
        if (!disk || (!disk.podLimitBytes && disk.emptyDirs.every((d) => d.limitBytes === undefined))) return;
        this.diskTimer = setInterval(() => {
            if (this.stopping || this.evicted || child.exitCode !== null || child.signalCode !== null) return;
            const reason = evictionReason(disk);
            if (!reason || child.pid === undefined) return;
            this.evicted = reason;
            signalGroup(child.pid, "SIGKILL");
        }, this.opts.diskCheckMs ?? DISK_CHECK_MS);
        this.diskTimer.unref();
    }

    async stop(graceMs?: number): Promise<void> {
        if (this.stopping) return this.exitPromise;
        this.stopping = true;
        clearInterval(this.diskTimer);
        const child = this.child;
        const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
        const grace = graceMs ?? this.opts.graceMs ?? 30_000;
        if (running() && this.opts.preStop) {
            const hook = this.opts.preStop;
            await new Promise<void>((resolve) => {
                const p = spawn(hook.argv[0], hook.argv.slice(1), {
                    cwd: hook.cwd,
                    env: hook.env,
                    stdio: "ignore",
                    ...(this.opts.uid !== undefined ? { uid: this.opts.uid, gid: this.opts.gid } : {}),
                });
                const timer = setTimeout(() => resolve(), grace);
                p.once("error", () => resolve());
                p.once("exit", () => {
                    clearTimeout(timer);
                    resolve();
                });
            });
        }
        if (running()) {
            signalGroup(child!.pid!, "SIGTERM");
            const killer = setTimeout(() => running() && signalGroup(child!.pid!, "SIGKILL"), grace);
            await this.exitPromise;
            clearTimeout(killer);
        }
        // Workers that outlived their leader (same process group) go too.
        if (child?.pid) signalGroup(child.pid, "SIGKILL");
        fs.rmSync(this.supervisor.pidFile(this.name), { force: true });
        this.cgroup?.remove();
    }
}

/**
 * Program, arguments and options for spawn: as `uid`/`gid` when given; inside the cgroup, the wrapper
 * joins it as root and switches user itself (a non-root process cannot join it).
 */
function spawnArgs(spec: ProcessSpec, user: { uid?: number; gid?: number }, cg?: ContainerCgroup) {
    const as = user.uid !== undefined ? { uid: user.uid, gid: user.gid } : undefined;
    const argv = joinCgroup(spec.argv, cg, as);
    return { command: argv[0], args: argv.slice(1), options: { cwd: spec.cwd, env: spec.env, ...(as && !cg ? as : {}) } };
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
    try {
        process.kill(-pid, signal);
    } catch {
        /* the group is gone */
    }
}

function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

function cmdline(pid: number): string {
    try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
    } catch {
        return "";
    }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 30): string {
    try {
        return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}

/** Whether a port on 127.0.0.1 can be bound right now. */
export function portIsFree(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const srv = net.createServer();
        srv.once("error", () => resolve(false));
        srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
    });
}

/**
 * Polls until `check` resolves true, or fails after `timeoutMs` with `describe()` (e.g. the log tail).
 * Errors thrown by `check` count as "not yet".
 */
export async function waitUntil(
    what: string,
    check: () => Promise<boolean>,
    timeoutMs: number,
    describe: () => string = () => "",
    abort?: AbortSignal,
): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
        if (abort?.aborted) throw new Error(`${what}: interrupted`);
        try {
            if (await check()) return;
        } catch (e) {
            last = (e as Error).message;
        }
        if (Date.now() > deadline) throw new Error(`${what}: not ready after ${Math.round(timeoutMs / 1000)} s ${last ? `(${last})` : ""}\n${describe()}`);
        await sleep(250);
    }
}

/** The HTTP status of a GET on 127.0.0.1 (no keep-alive), or an error if nothing answers. */
export async function httpStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    await res.arrayBuffer();
    return res.status;
}
