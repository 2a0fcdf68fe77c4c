// (7) Durability: kill -9 the PostgreSQL postmaster three times while a client logs metrics through the
// ingress with MLflow's retries. The supervisor restarts PostgreSQL (restartPolicy Always), it recovers
// from its WAL (fsync and synchronous_commit on, as the StatefulSet sets them), and every write the
// client saw acknowledged is there afterwards.
import assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import type { LocalPlatform } from "../../scripts/local/platform";
import { sleep, waitUntil } from "../../scripts/local/supervisor";
import { api, clientEnv, E2E_DIR, platformUp, startPython } from "./fixture";

const acked = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number) : []);

describe("e2e (7): kill -9 the PostgreSQL postmaster under writes", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;

    before(async () => {
        p = await platformUp();
    });

    it("keeps every acknowledged write across three crashes", async () => {
        const dir = fs.mkdtempSync(path.join(E2E_DIR, "kill-drill-"));
        const files = { runId: path.join(dir, "run_id"), acks: path.join(dir, "acks"), stop: path.join(dir, "stop"), log: path.join(dir, "client.log") };
        const env = clientEnv(p, { MLFLOW_HTTP_REQUEST_MAX_RETRIES: "10", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: "1", MLFLOW_HTTP_REQUEST_TIMEOUT: "30" });
        const client = startPython(p, ["tests/e2e/clients/log_metrics.py", files.runId, files.acks, files.stop], files.log, env);
        const exited = new Promise<number | null>((resolve) => client.once("exit", resolve));
        try {
            const crashes: { pid: number; ackedBefore: number }[] = [];
            for (let i = 0; i < 3; i++) {
                const target = acked(files.acks).length + 25;
                await waitUntil(`client acknowledging ${target} writes`, async () => acked(files.acks).length >= target, 240_000, () => fs.readFileSync(files.log, "utf8"));
                const pid = p.processes.postgres.pid;
                crashes.push({ pid, ackedBefore: acked(files.acks).length });
                process.kill(pid, "SIGKILL");
                await waitUntil("postgres restarted", async () => p.processes.postgres.pid !== pid, 60_000);
            }
            const target = acked(files.acks).length + 25;
            await waitUntil("writes after the last crash", async () => acked(files.acks).length >= target, 240_000, () => fs.readFileSync(files.log, "utf8"));
            assert.equal(new Set(crashes.map((c) => c.pid)).size, 3, "three different postmasters were killed");
        } finally {
            fs.writeFileSync(files.stop, "");
        }
        assert.equal(await exited, 0, fs.readFileSync(files.log, "utf8"));
        const summary = JSON.parse(fs.readFileSync(files.log, "utf8").trim().split("\n").pop()!);
        const runId = fs.readFileSync(files.runId, "utf8");
        const ackedSteps = acked(files.acks);

        const history = await api(p, `/api/2.0/mlflow/metrics/get-history?run_id=${runId}&metric_key=drill&max_results=25000`);
        assert.equal(history.status, 200, history.text);
        const stored = new Set<number>(history.json.metrics.map((m: any) => Number(m.step)));
        const missing = ackedSteps.filter((s) => !stored.has(s));
        assert.deepEqual(missing, [], `${missing.length} acknowledged writes lost`);
        console.log(`      ${ackedSteps.length} acknowledged of ${summary.attempted} attempted (${summary.failed} failed after retries), ${stored.size} stored; postgres restarts: ${p.processes.postgres.restarts}`);
        // The restart is visible in PostgreSQL's own log: crash recovery, not a clean start.
        assert.match(fs.readFileSync(p.processes.postgres.logFile, "utf8"), /database system was interrupted|was not properly shut down|automatic recovery in progress/);
        await sleep(0);
    });
});
