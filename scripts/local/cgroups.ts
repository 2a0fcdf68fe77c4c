// Container limits as the kubelet enforces them: each container's processes in a cgroup of their own with
// the container's memory and CPU limits. The kernel does the enforcing: a process tree over its memory
// limit is OOM-killed (the cgroup's oom_kill counter tells the supervisor to report it as OOMKilled),
// and CPU above the limit is throttled (CFS quota). cgroup v2 where it is mounted, else the v1 memory and
// cpu controllers; both need root. Where neither is writable the limits are not enforced and the
// launcher says so once.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { quantityValue } from "../../shared/quantity";

export interface ContainerLimits {
    memoryBytes?: number;
    /** CPU in millicores. */
    cpuMillis?: number;
}

/** The memory and CPU limits of a container, as numbers (requests do not limit anything). */
export function limitsOf(container: { resources?: { limits?: Record<string, string> } }): ContainerLimits {
    const l = container.resources?.limits ?? {};
    return {
        ...(l.memory ? { memoryBytes: Math.round(quantityValue(l.memory)) } : {}),
        ...(l.cpu ? { cpuMillis: Math.round(quantityValue(l.cpu) * 1000) } : {}),
    };
}

const CFS_PERIOD_US = 100_000;
const V2_ROOT = "/sys/fs/cgroup";
const V1_MEMORY = "/sys/fs/cgroup/memory";
const V1_CPU = "/sys/fs/cgroup/cpu";

/** One container's cgroup (v1: one per controller). */
export class ContainerCgroup {
    constructor(
        readonly name: string,
        private readonly version: 1 | 2,
        /** v2: the one directory; v1: [memory, cpu]. */
        readonly dirs: string[],
    ) {}

    /** The `cgroup.procs` files a process writes its PID into to join. */
    get procsFiles(): string[] {
        return this.dirs.map((d) => path.join(d, "cgroup.procs"));
    }

    /** How many times the kernel OOM-killed a process of this cgroup. */
    oomKills(): number {
        const file = this.version === 2 ? path.join(this.dirs[0], "memory.events") : path.join(this.dirs[0], "memory.oom_control");
        const m = /^oom_kill (\d+)$/m.exec(read(file));
        return m ? Number(m[1]) : 0;
    }

    /** Times the CPU quota held the cgroup back. */
    throttled(): number {
        const file = path.join(this.version === 2 ? this.dirs[0] : this.dirs[1], "cpu.stat");
        const m = /^nr_throttled (\d+)$/m.exec(read(file));
        return m ? Number(m[1]) : 0;
    }

    /** Memory the cgroup uses now (page cache included, as the kubelet's working set starts from). */
    memoryBytes(): number {
        return Number(read(path.join(this.dirs[0], this.version === 2 ? "memory.current" : "memory.usage_in_bytes")).trim() || 0);
    }

    /** Removes the cgroup once its processes are gone (a cgroup with members cannot be removed). */
    remove(): void {
        for (const d of this.dirs) {
            try {
                fs.rmdirSync(d);
            } catch {
                /* still has members, or gone */
            }
        }
    }
}

/** The cgroups of one local platform, under `mlflow-platform/<hash of its data directory>`. */
export class Cgroups {
    private constructor(
        private readonly version: 1 | 2,
        private readonly roots: string[],
    ) {}

    /** The platform's cgroup tree, or why limits cannot be enforced on this machine. */
    static open(dataDir: string): Cgroups | { unavailable: string } {
        const id = createHash("sha256").update(path.resolve(dataDir)).digest("hex").slice(0, 12);
        if (process.getuid?.() !== 0) return { unavailable: "cgroups need root (the launcher is not root)" };
        const v2 = fs.existsSync(path.join(V2_ROOT, "cgroup.controllers"));
        const roots = v2 ? [path.join(V2_ROOT, "mlflow-platform", id)] : [path.join(V1_MEMORY, "mlflow-platform", id), path.join(V1_CPU, "mlflow-platform", id)];
        try {
            if (!v2 && !(fs.existsSync(V1_MEMORY) && fs.existsSync(V1_CPU))) return { unavailable: "neither cgroup v2 nor the v1 memory and cpu controllers are mounted" };
            for (const r of roots) fs.mkdirSync(r, { recursive: true });
            // v2: a child gets a controller only when every ancestor delegates it.
            if (v2) for (const d of [V2_ROOT, path.join(V2_ROOT, "mlflow-platform"), roots[0]]) fs.writeFileSync(path.join(d, "cgroup.subtree_control"), "+memory +cpu");
        } catch (e) {
            return { unavailable: `cannot create cgroups: ${(e as Error).message}` };
        }
        return new Cgroups(v2 ? 2 : 1, roots);
    }

    /** A fresh cgroup for a container (a leftover of the same name, from a killed launcher, is replaced). */
    forContainer(name: string, limits: ContainerLimits): ContainerCgroup {
        const dirs = this.roots.map((r) => path.join(r, name));
        const cg = new ContainerCgroup(name, this.version, dirs);
        cg.remove();
        for (const d of dirs) fs.mkdirSync(d, { recursive: true });
        const [mem, cpu] = this.version === 2 ? [dirs[0], dirs[0]] : dirs;
        if (this.version === 2) {
            if (limits.memoryBytes) fs.writeFileSync(path.join(mem, "memory.max"), String(limits.memoryBytes));
            // Like the kubelet: no swap for a container with a memory limit.
            if (limits.memoryBytes && fs.existsSync(path.join(mem, "memory.swap.max"))) fs.writeFileSync(path.join(mem, "memory.swap.max"), "0");
            if (limits.cpuMillis) fs.writeFileSync(path.join(cpu, "cpu.max"), `${Math.max(1000, limits.cpuMillis * 100)} ${CFS_PERIOD_US}`);
        } else {
            if (limits.memoryBytes) {
                fs.writeFileSync(path.join(mem, "memory.limit_in_bytes"), String(limits.memoryBytes));
                const memsw = path.join(mem, "memory.memsw.limit_in_bytes");
                if (fs.existsSync(memsw)) fs.writeFileSync(memsw, String(limits.memoryBytes));
            }
            if (limits.cpuMillis) {
                fs.writeFileSync(path.join(cpu, "cpu.cfs_period_us"), String(CFS_PERIOD_US));
                fs.writeFileSync(path.join(cpu, "cpu.cfs_quota_us"), String(Math.max(1000, limits.cpuMillis * 100)));
            }
        }
        return cg;
    }

    /** Removes the platform's (empty) cgroups. */
    remove(): void {
        for (const r of this.roots) {
            for (const child of fs.existsSync(r) ? fs.readdirSync(r, { withFileTypes: true }) : []) {
                if (child.isDirectory()) new ContainerCgroup(child.name, this.version, [path.join(r, child.name)]).remove();
            }
            try {
                fs.rmdirSync(r);
            } catch {
                /* members left */
            }
        }
    }
}

/**
 * The argv that puts a process into the cgroup before it starts: a shell (as root: only root may move a
 * process into these cgroups) writes its own PID into each `cgroup.procs`, then execs the program, as
 * `user` when given (util-linux's setpriv, supplementary groups cleared as Node's spawn does), so the
 * program and every child it forks are inside.
 */
export function joinCgroup(argv: string[], cg: ContainerCgroup | undefined, user?: { uid: number; gid?: number }): string[] {
    if (!cg) return argv;
    const as = user ? ["/usr/bin/setpriv", `--reuid=${user.uid}`, `--regid=${user.gid ?? user.uid}`, "--clear-groups", "--"] : [];
    return ["/bin/sh", "-c", 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"', "join-cgroup", ...cg.procsFiles, "--", ...as, ...argv];
}

function read(file: string): string {
    try {
        return fs.readFileSync(file, "utf8");
    } catch {
        return "";
    }
}
