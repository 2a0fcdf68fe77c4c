// The tracking benchmark of `npm run bench`: MLflow REST calls under wrk at several client counts, on
// each target in turn, rounds interleaved (A, B, C, A, B, C, ...) so background load hits every target
// alike; a short warm-up run before each measured one is discarded. Each figure is the median of the
// rounds, with min and max; ratios are against the reference target of the same run.
import { runWrk, WrkResult } from "./wrk";

export interface Target {
    name: string;
    /** Base URL, e.g. http://127.0.0.1:5000 */
    url: string;
    headers?: Record<string, string>;
}

export type Scenario = "create-run" | "log-batch-10-one-run";
export const SCENARIOS: Scenario[] = ["create-run", "log-batch-10-one-run"];

export interface BenchOptions {
    scenarios: Scenario[];
    clients: number[];
    rounds: number;
    seconds: number;
    warmupSeconds: number;
    wrk: string;
    /** Scratch directory for wrk's scripts. */
    dir: string;
    log?: (line: string) => void;
}

export interface Figure {
    median: number;
    min: number;
    max: number;
}

export interface ScenarioResult {
    scenario: Scenario;
    clients: number;
    target: string;
    rounds: WrkResult[];
    requestsPerSec: Figure;
    p50Ms: Figure;
    p99Ms: Figure;
    non2xx: number;
    errors: number;
    /** Rounds that completed no request at all: a stall. */
    stalledRounds: number;
    /** Why the target could not be measured at all (its setup call failed), if so. */
    failed?: string;
}

const JSON_POST = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"';

async function post(t: Target, path: string, body: unknown): Promise<any> {
    const res = await fetch(`${t.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...t.headers }, body: JSON.stringify(body) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${t.name}: POST ${path} answered ${res.status}: ${text.slice(0, 300)}`);
    return JSON.parse(text);
}

/**
 * The wrk script of a scenario on a target (a run to log to is created first where needed), for the
 * `index`-th wrk invocation on it: the index keeps the points of every invocation (warm-up and rounds)
 * apart, since each wrk process counts from zero.
 */
async function luaFor(s: Scenario, t: Target): Promise<{ path: string; lua: (index: number) => string }> {
    if (s === "create-run") return { path: "/api/2.0/mlflow/runs/create", lua: () => `${JSON_POST}\nwrk.body = '{"experiment_id": "0"}'` };
    const run = (await post(t, "/api/2.0/mlflow/runs/create", { experiment_id: "0", run_name: "bench-one-run" })).run.info.run_id as string;
    // Every request logs 10 new points (thread id and a counter in value, timestamp and step), as the
    // workers of one distributed job logging to the same run would.
    const lua = (index: number) => `${JSON_POST}
local base = ${index} * 10000000
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
local n = 0
request = function()
  n = n + 1
  local step = base + n * 16 + (tid or 0)
  local ms = {}
  for i = 1, 10 do ms[i] = string.format('{"key":"m%d","value":%d,"timestamp":%d,"step":%d}', i, step, 1700000000000 + step, step) end
  return wrk.format(nil, nil, nil, string.format('{"run_id":"${run}","metrics":[%s]}', table.concat(ms, ",")))
end`;
    return { path: "/api/2.0/mlflow/runs/log-batch", lua };
}

const figure = (xs: number[]): Figure => {
    if (!xs.length) return { median: 0, min: 0, max: 0 };
    const s = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return { median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, min: s[0], max: s[s.length - 1] };
};

export async function benchTracking(targets: Target[], o: BenchOptions): Promise<ScenarioResult[]> {
    const out: ScenarioResult[] = [];
    for (const scenario of o.scenarios) {
        for (const clients of o.clients) {
            // A target that cannot even set up (a stalled server answering its pool timeout) is reported, not fatal.
            const scripts = await Promise.all(targets.map((t) => luaFor(scenario, t).catch((e: Error) => ({ failed: e.message }))));
            const rounds: WrkResult[][] = targets.map(() => []);
            const invocations = targets.map(() => 0);
            for (let r = 0; r < o.rounds; r++) {
                for (const [i, t] of targets.entries()) {
                    const s = scripts[i];
                    if ("failed" in s) continue;
                    const run = { url: `${t.url}${s.path}`, clients, headers: t.headers };
                    if (o.warmupSeconds > 0) await runWrk(o.wrk, o.dir, { ...run, lua: s.lua(invocations[i]++), seconds: o.warmupSeconds });
                    const res = await runWrk(o.wrk, o.dir, { ...run, lua: s.lua(invocations[i]++), seconds: o.seconds });
                    rounds[i].push(res);
                    o.log?.(`${scenario} ${clients} client(s) ${t.name} round ${r + 1}: ${res.requestsPerSec.toFixed(1)} req/s, p50 ${res.p50Ms.toFixed(0)} ms, p99 ${res.p99Ms.toFixed(0)} ms, non-2xx ${res.non2xx}`);
                }
            }
            for (const [i, t] of targets.entries()) {
                const rs = rounds[i];
                const s = scripts[i];
                if ("failed" in s) o.log?.(`${scenario} ${clients} client(s) ${t.name}: not measured: ${s.failed}`);
                out.push({
                    ...("failed" in s ? { failed: s.failed } : {}),
                    scenario,
                    clients,
                    target: t.name,
                    rounds: rs,
                    requestsPerSec: figure(rs.map((x) => x.requestsPerSec)),
                    p50Ms: figure(rs.map((x) => x.p50Ms)),
                    p99Ms: figure(rs.map((x) => x.p99Ms)),
                    non2xx: rs.reduce((a, x) => a + x.non2xx, 0),
                    errors: rs.reduce((a, x) => a + x.errors, 0),
                    stalledRounds: rs.filter((x) => x.requests === 0).length,
                });
            }
        }
    }
    return out;
}

/** A Markdown table: one row per scenario and client count, req/s (median, min–max) per target and each target's ratio to `reference`. */
export function markdownTable(results: ScenarioResult[], targets: string[], reference: string): string {
    const rows = new Map<string, ScenarioResult[]>();
    for (const r of results) rows.set(`${r.scenario}|${r.clients}`, [...(rows.get(`${r.scenario}|${r.clients}`) ?? []), r]);
    const head = `| scenario | clients | ${targets.map((t) => `${t} req/s (p50, p99 ms)`).join(" | ")} | ${targets.filter((t) => t !== reference).map((t) => `${t} / ${reference}`).join(" | ")} |`;
    const sep = `|${" --- |".repeat(2 + targets.length + targets.length - 1)}`;
    const lines = [...rows.entries()].map(([k, rs]) => {
        const [scenario, clients] = k.split("|");
        const by = (t: string) => rs.find((r) => r.target === t)!;
        const cell = (r: ScenarioResult) => r.failed ? `not measured: ${r.failed.slice(0, 80)}` : `${r.requestsPerSec.median.toFixed(1)} (${r.requestsPerSec.min.toFixed(1)}–${r.requestsPerSec.max.toFixed(1)}; ${r.p50Ms.median.toFixed(0)}, ${r.p99Ms.median.toFixed(0)})${r.non2xx ? `, ${r.non2xx} non-2xx` : ""}${r.stalledRounds ? `, ${r.stalledRounds} stalled` : ""}`;
        const ratio = (t: string) => (by(reference).requestsPerSec.median > 0 ? (by(t).requestsPerSec.median / by(reference).requestsPerSec.median).toFixed(2) : "–");
        return `| ${scenario} | ${clients} | ${targets.map((t) => cell(by(t))).join(" | ")} | ${targets.filter((t) => t !== reference).map(ratio).join(" | ")} |`;
    });
    return [head, sep, ...lines].join("\n") + "\n";
}
