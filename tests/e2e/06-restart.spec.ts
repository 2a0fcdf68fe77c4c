// (6) Restart everything: stop every process (by PID), start again on the same data directory. Runs,
// registered models and artifacts are all still there, the credentials and URLs unchanged, the champion
// served again.
import assert from "assert/strict";
import type { LocalPlatform } from "../../scripts/local/platform";
import { httpStatus, waitUntil } from "../../scripts/local/supervisor";
import { api, platformDown, platformUp, s3Keys, timed, wineExample } from "./fixture";

/** What a user can see: experiments, runs with data, models with versions and aliases, artifacts. */
async function snapshot(p: LocalPlatform) {
    const experiments = (await api(p, "/api/2.0/mlflow/experiments/search?max_results=1000")).json.experiments;
    const ids = experiments.map((e: any) => e.experiment_id);
    const runs = (await api(p, "/api/2.0/mlflow/runs/search", { body: { experiment_ids: ids, max_results: 1000 } })).json.runs ?? [];
    const models = (await api(p, "/api/2.0/mlflow/registered-models/search?max_results=1000")).json.registered_models;
    const versions = (await api(p, "/api/2.0/mlflow/model-versions/search?max_results=1000")).json.model_versions;
    const run = await wineExample(p);
    const mlmodel = await api(p, `/api/2.0/mlflow-artifacts/artifacts/${run.experiment_id}/models/${run.model_id}/artifacts/MLmodel`);
    const matrix = await api(p, `/get-artifact?path=evaluation/confusion_matrix.json&run_uuid=${run.run_id}`);
    const bucket = p.artifactsDestination.replace(/^s3:\/\//, "");
    return {
        experiments: experiments.map((e: any) => [e.experiment_id, e.name, e.lifecycle_stage]).sort(),
        runs: runs.map((r: any) => ({ id: r.info.run_id, status: r.info.status, params: r.data.params, metrics: r.data.metrics, tags: r.data.tags })).sort((a: any, b: any) => a.id.localeCompare(b.id)),
        models: models.map((m: any) => ({ name: m.name, aliases: m.aliases, latest: m.latest_versions?.map((v: any) => v.version) })),
        versions: versions.map((v: any) => [v.name, v.version, v.source, v.status, v.run_id]).sort(),
        mlmodel: [mlmodel.status, mlmodel.text],
        matrix: [matrix.status, matrix.text],
        objects: (await s3Keys(p, "mlflow-artifacts-readonly", bucket, "")).sort(),
    };
}

describe("e2e (6): restart everything", function () {
    this.timeout(1_800_000);

    it("keeps runs, models and artifacts, the login and the URL", async () => {
        let p = await platformUp();
        await wineExample(p);
        const before = await snapshot(p);
        assert.ok(before.runs.length >= 2 && before.versions.length >= 2 && before.objects.length > 5, JSON.stringify(before).slice(0, 500));
        const { uiUrl, login } = p;
        const pids = Object.fromEntries(Object.entries(p.processes).map(([k, m]) => [k, m.pid]));
        const servingBefore = await p.cluster!.inferenceServices(p.stack.namespace);
        await timed("stop", () => platformDown());
        for (const [name, pid] of Object.entries(pids)) assert.throws(() => process.kill(pid, 0), `${name} (pid ${pid}) is stopped`);

        const restarted = Date.now();
        p = await timed("restart", () => platformUp());
        assert.equal(p.uiUrl, uiUrl, "ports are kept in ports.json");
        assert.deepEqual(p.login, login, "credentials come from the persisted seed");
        const after = await snapshot(p);
        assert.deepEqual(after, before);
        await p.serving!.waitForModel("wine-quality", 600_000);
        // The InferenceService the controller created is kept (as etcd keeps it); once the restarted
        // controller has had its pass (/readyz), it has found serving current and written nothing.
        assert.deepEqual(await p.cluster!.inferenceServices(p.stack.namespace), servingBefore);
        const readyz = `http://127.0.0.1:${p.servicePort("mlflow-deploy-controller", 9090)}/readyz`;
        await waitUntil("controller ready", async () => (await httpStatus(readyz)) === 200, 120_000);
        // Nor did the launcher's apply: the rendered stack did not change, so nothing was sent (audit log).
        assert.deepEqual(p.cluster!.inferenceServiceWrites({ since: restarted }), []);
    });
});
