// wrk (Debian's package) as the load tool of `npm run bench`: a Lua script that makes each request's
// body (so metrics do not repeat), `--latency` output parsed into requests/s, p50, p99, non-2xx and
// errors. Loopback only; each run bounded by its duration.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

export interface WrkResult {
    requests: number;
    requestsPerSec: number;
    p50Ms: number;
    p99Ms: number;
    non2xx: number;
    /** Socket errors: connect, read, write, timeout. */
    errors: number;
}

export interface WrkRun {
    url: string;
    /** Lua defining `request = function() ... end` (wrk.format), or nothing for a plain GET. */
    lua?: string;
    clients: number;
    seconds: number;
    headers?: Record<string, string>;
}

const MS: Record<string, number> = { us: 1e-3, ms: 1, s: 1000, m: 60_000 };

/** The figures of wrk's `--latency` output. */
export function parseWrk(out: string): WrkResult {
    const num = (re: RegExp, what: string) => {
        const m = re.exec(out);
        if (!m) throw new Error(`wrk printed no ${what}:\n${out}`);
        return m;
    };
    const latency = (pct: string) => {
        const m = num(new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m"), `${pct}% latency`);
        return Number(m[1]) * MS[m[2]];
    };
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    return {
        requests: Number(num(/^\s*(\d+) requests in /m, "request count")[1]),
        requestsPerSec: Number(num(/^Requests\/sec:\s+([\d.]+)/m, "Requests/sec")[1]),
        p50Ms: latency("50"),
        p99Ms: latency("99"),
        non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
        errors: errors ? errors.slice(1).reduce((a, x) => a + Number(x), 0) : 0,
    };
}

/** Runs wrk once; `dir` holds its Lua script. */
export function runWrk(wrk: string, dir: string, r: WrkRun): Promise<WrkResult> {
    const headers = Object.entries(r.headers ?? {}).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`);
    const script = path.join(dir, `wrk-${process.pid}-${Date.now()}.lua`);
    fs.writeFileSync(script, [...headers, r.lua ?? ""].join("\n") + "\n");
    const threads = Math.min(r.clients, 2);
    const args = ["-t", String(threads), "-c", String(r.clients), "-d", `${r.seconds}s`, "--timeout", `${Math.max(r.seconds, 2)}s`, "--latency", "-s", script, r.url];
    return new Promise((resolve, reject) => {
        const child = spawn(wrk, args, { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (out += d));
        child.once("error", reject);
        child.once("close", (code) => {
            fs.rmSync(script, { force: true });
            if (code !== 0) return reject(new Error(`wrk exited ${code}:\n${out}`));
            try {
                resolve(parseWrk(out));
            } catch (e) {
                reject(e);
            }
        });
    });
}

/** wrk from Debian, installed on first use (scripts/tools/ensure-apt.sh); its path. */
export function ensureWrk(): string {
    const r = spawnSync(path.resolve(__dirname, "..", "tools", "ensure-apt.sh"), ["wrk"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`wrk could not be installed: ${(r.stderr || r.stdout).trim()}`);
    return "/usr/bin/wrk";
}
