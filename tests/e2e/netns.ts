// A network namespace of the test's own, joined to this host by a veth pair on a private /30: a process
// inside it sits where an off-cluster user sits, with its own loopback and no route anywhere but the
// host side of the pair, so it reaches only what the host serves on that address (the platform's edge,
// started with `edgeAddresses: [ns.hostAddress]`). Names are unique per test process (`mlfp-<pid>`);
// destroy() removes the namespace, the veth pair and /etc/netns/<name>, and create() first removes what
// a killed test process left behind. Every command runs asynchronously: the platform's Kubernetes API
// stand-in is served from the test process's event loop.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";

/** Why this machine cannot give the test a namespace (not root, no CAP_SYS_ADMIN, no iproute2): the spec is skipped, saying so. */
export class NetNsUnavailable extends Error {}

const PREFIX = "mlfp-";
const ETC_NETNS = "/etc/netns";
/** Where the /30s are picked from: 10.213.0.0/16, rarely used by anything else. */
const POOL = { base: (10 << 24) | (213 << 16), blocks: 1 << 14 };

export interface Exec {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
    timedOut: boolean;
}

export interface ExecOptions {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    timeoutMs?: number;
}

const IP_CANDIDATES = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];
function ipBinary(): string | undefined {
    return IP_CANDIDATES.find((p) => fs.existsSync(p));
}

/** Runs a command to completion without blocking the event loop; a timeout kills it by PID (SIGTERM, then SIGKILL). */
export function run(argv: string[], o: ExecOptions = {}): Promise<Exec> {
    return new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { env: o.env ?? process.env, cwd: o.cwd, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        let timedOut = false;
        child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
        child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
        let kill: NodeJS.Timeout | undefined;
        const timer =
            o.timeoutMs === undefined
                ? undefined
                : setTimeout(() => {
                      timedOut = true;
                      child.kill("SIGTERM");
                      kill = setTimeout(() => child.kill("SIGKILL"), 5000);
                  }, o.timeoutMs);
        child.once("error", (e) => {
            clearTimeout(timer);
            reject(e);
        });
        child.once("close", (code, signal) => {
            clearTimeout(timer);
            clearTimeout(kill);
            resolve({ code, signal, stdout, stderr, timedOut });
        });
    });
}

async function ip(args: string[]): Promise<Exec> {
    const bin = ipBinary();
    if (!bin) throw new NetNsUnavailable("iproute2's `ip` is not installed (apt-get install iproute2)");
    return run([bin, ...args], { timeoutMs: 30_000 });
}

async function ipOk(args: string[]): Promise<string> {
    const r = await ip(args);
    if (r.code !== 0) throw new Error(`ip ${args.join(" ")} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`);
    return r.stdout;
}

const toInt = (a: string) => a.split(".").reduce((n, b) => n * 256 + Number(b), 0);
const toDotted = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

/** [first, last] address of a CIDR (`10.0.0.0/8`, or a bare address as a /32). */
function range(cidr: string): [number, number] {
    const [addr, bits = "32"] = cidr.split("/");
    const size = 2 ** (32 - Number(bits));
    const first = Math.floor(toInt(addr) / size) * size;
    return [first, first + size - 1];
}

/** Every IPv4 network this host already has an address in or a route to (the default route aside). */
async function takenNetworks(): Promise<[number, number][]> {
    const out: [number, number][] = [];
    for (const line of (await ipOk(["-4", "-o", "addr", "show"])).split("\n")) {
        const m = line.match(/\binet (\d+\.\d+\.\d+\.\d+\/\d+)/);
        if (m) out.push(range(m[1]));
    }
    const types = new Set(["unicast", "local", "broadcast", "multicast", "anycast", "blackhole", "unreachable", "prohibit", "throw", "nat"]);
    for (const line of (await ipOk(["-4", "route", "show", "table", "all"])).split("\n")) {
        const f = line.trim().split(/\s+/);
        const dest = types.has(f[0]) ? f[1] : f[0];
        if (dest && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dest)) out.push(range(dest));
    }
    return out;
}

function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return (e as NodeJS.ErrnoException).code === "EPERM";
    }
}

/** Whether a failure of `ip netns add` (or of writing /etc/netns) means "not allowed here". */
const FORBIDDEN = /Operation not permitted|Permission denied|EPERM|EACCES|must be root/i;

export class NetNs {
    /** Set when this process created /etc/netns itself (removed again once empty). */
    private static createdEtcNetns = false;
    private destroyed = false;

    private constructor(
        /** The namespace's name, `mlfp-<pid>`. */
        readonly name: string,
        /** The veth end on the host, and the one inside the namespace. */
        readonly hostIf: string,
        readonly nsIf: string,
        /** The host side's address: the only address the namespace has a route to. */
        readonly hostAddress: string,
        /** The namespace side's address. */
        readonly nsAddress: string,
    ) {}

    /** /etc/netns/<name>: `ip netns exec` bind-mounts its files over /etc's (hosts, resolv.conf). */
    get etcDir(): string {
        return path.join(ETC_NETNS, this.name);
    }

    /**
     * Creates the namespace (`mlfp-<pid>`), a veth pair with a free 10.213.x.y/30 (host side .1, namespace
     * side .2, both up, and `lo` up inside), /etc/netns/<name>/hosts with localhost only and an empty
     * resolv.conf (no name server). Throws NetNsUnavailable when the machine forbids it.
     */
    static async create(): Promise<NetNs> {
        if (process.platform !== "linux") throw new NetNsUnavailable(`network namespaces are a Linux feature (this is ${process.platform})`);
        if (!ipBinary()) throw new NetNsUnavailable("iproute2's `ip` is not installed (apt-get install iproute2)");
        await NetNs.removeLeftovers();
        const name = `${PREFIX}${process.pid}`;
        const added = await ip(["netns", "add", name]);
        if (added.code !== 0) {
            const why = added.stderr.trim();
            if (FORBIDDEN.test(why)) throw new NetNsUnavailable(`\`ip netns add\` is not allowed here (needs root with CAP_SYS_ADMIN): ${why}`);
            throw new Error(`ip netns add ${name} failed (${added.code ?? added.signal}): ${why}`);
        }
        // Interface names are at most 15 characters: mlfp<pid>h / mlfp<pid>n.
        const hostIf = `mlfp${process.pid}h`;
        const nsIf = `mlfp${process.pid}n`;
        const ns = new NetNs(name, hostIf, nsIf, "", "");
        try {
            const taken = await takenNetworks();
            const start = (process.pid * 7) % POOL.blocks;
            let block: number | undefined;
            for (let i = 0; i < POOL.blocks && block === undefined; i++) {
                const first = POOL.base + ((start + i) % POOL.blocks) * 4;
                if (!taken.some(([a, b]) => a <= first + 3 && first <= b)) block = first;
            }
            if (block === undefined) throw new Error("no free /30 in 10.213.0.0/16");
            const hostAddress = toDotted(block + 1);
            const nsAddress = toDotted(block + 2);
            Object.assign(ns, { hostAddress, nsAddress });
            await ipOk(["link", "add", hostIf, "type", "veth", "peer", "name", nsIf]);
            await ipOk(["link", "set", nsIf, "netns", name]);
            await ipOk(["addr", "add", `${hostAddress}/30`, "dev", hostIf]);
            await ipOk(["link", "set", hostIf, "up"]);
            await ipOk(["-n", name, "addr", "add", `${nsAddress}/30`, "dev", nsIf]);
            await ipOk(["-n", name, "link", "set", nsIf, "up"]);
            await ipOk(["-n", name, "link", "set", "lo", "up"]);
            try {
                if (!fs.existsSync(ETC_NETNS)) {
                    fs.mkdirSync(ETC_NETNS, { mode: 0o755 });
                    NetNs.createdEtcNetns = true;
                }
                fs.mkdirSync(ns.etcDir, { recursive: true, mode: 0o755 });
                ns.writeHosts({});
                fs.writeFileSync(path.join(ns.etcDir, "resolv.conf"), "");
            } catch (e) {
                if (FORBIDDEN.test(String((e as NodeJS.ErrnoException).code ?? e))) throw new NetNsUnavailable(`cannot write ${ns.etcDir}: ${(e as Error).message}`);
                throw e;
            }
        } catch (e) {
            await ns.destroy().catch(() => undefined);
            throw e;
        }
        return ns;
    }

    /** Writes the namespace's /etc/hosts: localhost, and each name → address given. */
    writeHosts(names: Record<string, string>): void {
        const lines = ["127.0.0.1 localhost", "::1 localhost", ...Object.entries(names).map(([n, a]) => `${a} ${n}`)];
        fs.writeFileSync(path.join(this.etcDir, "hosts"), lines.join("\n") + "\n");
    }

    /** Runs argv inside the namespace (`ip netns exec <name> …`, which execs it: the child's PID is the command's). */
    exec(argv: string[], o: ExecOptions = {}): Promise<Exec> {
        if (this.destroyed) throw new Error(`namespace ${this.name} is gone`);
        return run([ipBinary()!, "netns", "exec", this.name, ...argv], o);
    }

    /**
     * Removes everything create() made: stops any process still inside (only ours can be there), then the
     * veth pair, the namespace and /etc/netns/<name>. Idempotent; reports what it could not remove.
     */
    async destroy(): Promise<void> {
        return this.teardown(true);
    }

    /** `killInside`: only for this process's own namespace, where nothing but what exec() started can run. */
    private async teardown(killInside: boolean): Promise<void> {
        if (this.destroyed) return;
        this.destroyed = true;
        const errors: string[] = [];
        const pids = killInside ? await ip(["netns", "pids", this.name]) : undefined;
        for (const pid of pids?.code === 0 ? pids.stdout.split(/\s+/).filter(Boolean).map(Number) : []) {
            try {
                process.kill(pid, "SIGKILL");
            } catch {
                /* gone meanwhile */
            }
        }
        const link = await ip(["link", "del", this.hostIf]);
        if (link.code !== 0 && !/Cannot find device/.test(link.stderr)) errors.push(`ip link del ${this.hostIf}: ${link.stderr.trim()}`);
        const del = await ip(["netns", "del", this.name]);
        if (del.code !== 0 && !/No such file/.test(del.stderr)) errors.push(`ip netns del ${this.name}: ${del.stderr.trim()}`);
        try {
            fs.rmSync(this.etcDir, { recursive: true, force: true });
            if (NetNs.createdEtcNetns && fs.existsSync(ETC_NETNS) && fs.readdirSync(ETC_NETNS).length === 0) {
                fs.rmdirSync(ETC_NETNS);
                NetNs.createdEtcNetns = false;
            }
        } catch (e) {
            errors.push(`${this.etcDir}: ${(e as Error).message}`);
        }
        if (errors.length) throw new Error(`could not tear down network namespace ${this.name}: ${errors.join("; ")}`);
    }

    /**
     * Namespaces `mlfp-<pid>` whose test process is gone (killed before its `after` hook): removed with
     * their veth and /etc/netns entry. Processes still inside are not this process's: they are left alone.
     */
    private static async removeLeftovers(): Promise<void> {
        const list = await ip(["netns", "list"]);
        if (list.code !== 0) return;
        for (const line of list.stdout.split("\n")) {
            const m = line.match(/^mlfp-(\d+)\b/);
            if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
            const stale = new NetNs(`${PREFIX}${m[1]}`, `mlfp${m[1]}h`, `mlfp${m[1]}n`, "", "");
            await stale.teardown(false).catch(() => undefined);
        }
    }

    /** This test's namespaces and links, as `ip` lists them (for the spec's check that nothing is left). */
    static async present(name: string, hostIf: string): Promise<{ netns: boolean; link: boolean; etc: boolean }> {
        const list = await ipOk(["netns", "list"]);
        const link = await ip(["link", "show", hostIf]);
        return { netns: list.split("\n").some((l) => l.split(/\s/)[0] === name), link: link.code === 0, etc: fs.existsSync(path.join(ETC_NETNS, name)) };
    }
}
