// (12) `npm run bench` cannot rot: one short round of the tracking benchmark with real wrk, against the
// e2e platform (through the edge and direct) and a plain `mlflow server` with its defaults started here.
// It proves the benchmark runs and its figures are real (requests completed, all 2xx), not how fast; with
// a warm-up, as the benchmark measures.
import assert from "assert/strict";
import * as path from "path";
import { startMlflowServer } from "../../scripts/bench/reference";
import { platformTargets } from "../../scripts/bench/targets";
import { benchTracking, markdownTable, SCENARIOS } from "../../scripts/bench/tracking";
import { ensureWrk } from "../../scripts/bench/wrk";
import { Supervisor } from "../../scripts/local/supervisor";
import { E2E_DIR, platformUp } from "./fixture";

const REFERENCE = "mlflow server defaults";

describe("e2e (12): the benchmark's smoke round", function () {
    this.timeout(600_000);
    const dir = path.join(E2E_DIR, "bench-smoke");
    let supervisor: Supervisor | undefined;
    after(() => supervisor?.stopAll());

    it("runs every tracking scenario on the edge, the platform's MLflow and plain mlflow server: every answer 2xx, the platform carrying each, a stall reported as one", async () => {
        const p = await platformUp();
        // After the platform is up: its first start empties the e2e directory.
        supervisor = new Supervisor(path.join(dir, "logs"), path.join(dir, "pids"));
        const reference = await startMlflowServer({ mlflowVenv: p.tools.mlflowVenv, dir, supervisor });
        const targets = [...platformTargets(p), { name: REFERENCE, url: reference.url }];
        const results = await benchTracking(targets, { scenarios: SCENARIOS, clients: [2], rounds: 1, seconds: 2, warmupSeconds: 2, wrk: ensureWrk(), dir, log: (l) => console.log(`      [bench] ${l}`) });
        assert.equal(results.length, SCENARIOS.length * targets.length);
        for (const r of results) {
            const what = `${r.scenario} on ${r.target}`;
            assert.equal(r.non2xx, 0, `${what}: non-2xx answers`);
            assert.equal(r.errors, 0, `${what}: socket errors`);
            if (r.rounds[0].requests > 0) assert.ok(r.p50Ms.median > 0 && r.p99Ms.median >= r.p50Ms.median, `${what}: latencies ${JSON.stringify(r.rounds[0])}`);
            // The platform must carry two clients in every scenario; plain `mlflow server` on SQLite may
            // stall on concurrent writes (seen here for a whole 2 s round), which is what it reports.
            if (r.target !== REFERENCE) assert.ok(r.rounds[0].requests > 0, `${what}: no request completed`);
        }
        assert.ok(results.some((r) => r.target === REFERENCE && r.rounds[0].requests > 0), "the reference completed no request in any scenario");
        const table = markdownTable(results, targets.map((t) => t.name), REFERENCE);
        for (const t of targets) assert.ok(table.includes(t.name), table);
        assert.match(table, /\| log-batch-10-one-run \| 2 \| [\d.]+ \(/);
        console.log(table.replace(/^/gm, "      "));
    });
});
