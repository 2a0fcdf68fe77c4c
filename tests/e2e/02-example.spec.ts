// (2) The example as a data scientist runs it, through the ingress: its run, parameters and metrics read
// back over REST, the model's files found in the MinIO bucket with the S3 API (boto3, the read-only
// serving user, not through MLflow), and the registered version carrying the alias.
import assert from "assert/strict";
import type { LocalPlatform } from "../../scripts/local/platform";
import { api, clientEnv, platformUp, runPython, s3Keys, wineExample, ExampleRun } from "./fixture";

describe("e2e (2): the wine example through the ingress", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;
    let run: ExampleRun;

    before(async () => {
        p = await platformUp();
        run = await wineExample(p);
    });

    it("logs a finished run with its parameters and metrics, readable over REST", async () => {
        const res = await api(p, `/api/2.0/mlflow/runs/get?run_id=${run.run_id}`);
        assert.equal(res.status, 200, res.text);
        const r = res.json.run;
        assert.equal(r.info.status, "FINISHED");
        const params = Object.fromEntries(r.data.params.map((x: any) => [x.key, x.value]));
        assert.deepEqual(params, { C: "1.0", max_iter: "1000", test_size: "0.25", random_state: "42" });
        const metrics = Object.fromEntries(r.data.metrics.map((x: any) => [x.key, x.value]));
        assert.ok(metrics.accuracy > 0.9 && metrics.accuracy <= 1, `accuracy ${metrics.accuracy}`);
        assert.ok(metrics.f1_macro > 0.9, `f1 ${metrics.f1_macro}`);
        const history = await api(p, `/api/2.0/mlflow/metrics/get-history?run_id=${run.run_id}&metric_key=accuracy`);
        assert.equal(history.json.metrics.length, 1);
        const search = await api(p, "/api/2.0/mlflow/runs/search", { body: { experiment_ids: [run.experiment_id], filter: "metrics.accuracy > 0.9" } });
        assert.ok(search.json.runs.some((x: any) => x.info.run_id === run.run_id));
    });

    it("stores the model's files in the artifact bucket (S3 API, read-only user)", async () => {
        const bucket = p.artifactsDestination.replace(/^s3:\/\//, "");
        const keys = await s3Keys(p, "mlflow-artifacts-readonly", bucket, `${run.experiment_id}/models/${run.model_id}/artifacts/`);
        const files = keys.map((k) => k.split("/").pop());
        for (const f of ["MLmodel", "model.skops", "requirements.txt", "input_example.json"]) assert.ok(files.includes(f), `${f} missing from ${keys.join(", ")}`);
        const runArtifacts = await s3Keys(p, "mlflow-artifacts-readonly", bucket, `${run.experiment_id}/${run.run_id}/artifacts/`);
        assert.deepEqual(runArtifacts.map((k) => k.split("/artifacts/")[1]), ["evaluation/confusion_matrix.json"]);
    });

    it("registers the model and points the alias champion at the new version", async () => {
        const res = await api(p, `/api/2.0/mlflow/registered-models/alias?name=${run.registered_model}&alias=champion`);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json.model_version.version, run.version);
        assert.equal(res.json.model_version.status, "READY");
        assert.equal(res.json.model_version.source, `models:/${run.model_id}`);
    });

    it("refuses a model version whose source points outside the platform's artifact space", async () => {
        const res = await api(p, "/api/2.0/mlflow/model-versions/create", { body: { name: run.registered_model, source: "file:///etc" } });
        assert.equal(res.status, 400, res.text);
    });

    it("can be run again: a second version takes the alias", async () => {
        const second = await runPython(p, ["examples/train_wine.py"], clientEnv(p, { WINE_C: "0.5" }));
        assert.equal(Number(second.version), Number(run.version) + 1);
        const res = await api(p, `/api/2.0/mlflow/registered-models/alias?name=${run.registered_model}&alias=champion`);
        assert.equal(res.json.model_version.version, second.version);
    });
});
