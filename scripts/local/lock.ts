// One launcher per data directory: `<dir>/launcher.pid`, created exclusively (it appears with its
// content, by a hard link of a finished temporary file, so no one ever reads it half written) before
// anything else is done to the directory. It holds the launcher's PID (first line) and when that process
// started; a lock whose process is gone, or whose PID now belongs to another process (a reused PID), is
// stale and taken over.
import * as fs from "fs";
import * as path from "path";

export const LAUNCHER_LOCK = "launcher.pid";

/** Lock files this process holds (a second platform in the same process is refused too). */
const held = new Set<string>();

export interface LauncherLock {
    readonly file: string;
    /** Removes the lock if it is still this process's. */
    release(): void;
}

export class LauncherRunning extends Error {
    constructor(
        readonly pid: number,
        readonly dir: string,
    ) {
        super(
            pid === process.pid
                ? `this process already runs a platform on ${dir}`
                : `another launcher (pid ${pid}) is already running on ${dir}; stop it first (Ctrl-C in its terminal, or kill -TERM ${pid}), or pass --dir with another data directory`,
        );
    }
}

export function claimLauncherLock(dir: string): LauncherLock {
    const file = path.join(dir, LAUNCHER_LOCK);
    const tmp = path.join(dir, `.${LAUNCHER_LOCK}.${process.pid}.tmp`);
    const identity = processIdentity("self") ?? "";
    fs.writeFileSync(tmp, `${process.pid}\n${identity}\n`, { mode: 0o644 });
    try {
        for (let attempt = 0; attempt < 10; attempt++) {
            try {
                fs.linkSync(tmp, file); // fails with EEXIST if any lock is there: exclusive, like open(O_EXCL)
                held.add(file);
                return { file, release: () => releaseLock(file) };
            } catch (e) {
                if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
            }
            const holder = readLock(file);
            if (!holder) continue; // removed meanwhile: try again
            if (holderAlive(file, holder)) throw new LauncherRunning(holder.pid, dir);
            // Stale: remove it, unless someone replaced it since it was read.
            const again = readLock(file);
            if (again && again.ino === holder.ino && again.raw === holder.raw) fs.rmSync(file, { force: true });
        }
        throw new Error(`could not claim ${file}: other launchers keep taking it`);
    } finally {
        fs.rmSync(tmp, { force: true });
    }
}

interface Holder {
    pid: number;
    /** The holder's boot id and start time (processIdentity), absent in a lock of an earlier version. */
    identity?: string;
    ino: number;
    raw: string;
}

function readLock(file: string): Holder | undefined {
    try {
        const st = fs.statSync(file);
        const raw = fs.readFileSync(file, "utf8");
        const [pid, identity] = raw.split("\n");
        return { pid: Number(pid.trim()), identity: identity?.trim() || undefined, ino: st.ino, raw };
    } catch {
        return undefined;
    }
}

function holderAlive(file: string, h: Holder): boolean {
    if (!Number.isInteger(h.pid) || h.pid <= 1) return false;
    if (h.pid === process.pid) return held.has(file);
    try {
        process.kill(h.pid, 0);
    } catch (e) {
        // EPERM: it exists, as another user.
        if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
    }
    const now = processIdentity(h.pid);
    if (now === "zombie") return false;
    // The same PID in another process (reused since, or after a reboot) is not the launcher.
    if (h.identity && now !== undefined) return now === h.identity;
    return true; // no /proc, or a lock without an identity: the PID is all there is
}

/**
 * `<boot id> <start time in clock ticks since boot>` of a process, from /proc: the same for the life of
 * a process, different for any later process with its PID. "zombie" for one that has exited.
 */
export function processIdentity(pid: number | "self"): string | "zombie" | undefined {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
        // Fields after the command name (which may contain spaces and parentheses): state is field 3, starttime 22.
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (fields[0] === "Z" || fields[0] === "X") return "zombie";
        const boot = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
        return `${boot} ${fields[19]}`;
    } catch {
        return undefined;
    }
}

function releaseLock(file: string): void {
    if (!held.delete(file)) return;
    const h = readLock(file);
    if (h?.pid === process.pid) fs.rmSync(file, { force: true });
}
