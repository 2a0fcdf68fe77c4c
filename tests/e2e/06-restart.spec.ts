// (6) Restart everything: stop every process (by PID), start again on the same data directory. Runs,
// registered models and artifacts are all still there, the credentials and URLs unchanged, the champion
// served again. And the platform as Kubernetes runs it: pods on the node, Ready or Succeeded, and a
// deleted pod replaced by its controller.
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
        // What was declared (by Pulumi, by the controller): the status is the serving side's to rewrite.
        const declared = async () => (await p.cluster!.inferenceServices(p.stack.namespace)).map((o) => ({ uid: o.metadata.uid, generation: o.metadata.generation, labels: o.metadata.labels, annotations: o.metadata.annotations, spec: o.spec }));
        const servingBefore = await declared();
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
        assert.deepEqual(await declared(), servingBefore);
        // And the status the local KServe part wrote back once the model server was up again, as `kubectl get inferenceservice` shows it.
        const shown = p.cluster!.controlPlane.kubectl(["-n", p.stack.namespace, "get", "inferenceservice", "wine-quality", "-o", "jsonpath={.status.url} {.status.conditions[?(@.type=='Ready')].status}"]);
        assert.equal(shown.stdout, `http://wine-quality-predictor.${p.stack.namespace}.svc.cluster.local True`, shown.stderr);
        const readyz = `http://127.0.0.1:${p.servicePort("mlflow-deploy-controller", 9090)}/readyz`;
        await waitUntil("controller ready", async () => (await httpStatus(readyz)) === 200, 120_000);
        // Nor did the launcher's apply: the rendered stack did not change, so nothing was sent (audit log).
        assert.deepEqual(p.cluster!.inferenceServiceWrites({ since: restarted }), []);
    });

    it("runs as Kubernetes pods: each on the node, Ready or Succeeded, and a deleted pod replaced through its ReplicaSet while the edge keeps its data", async () => {
        const p = await platformUp();
        const ns = p.stack.namespace;
        const kubectl = (args: string[]) => {
            const r = p.cluster!.controlPlane.kubectl(["-n", ns, ...args]);
            assert.equal(r.status, 0, r.stderr);
            return r.stdout;
        };
        const pods = () => (JSON.parse(kubectl(["get", "pods", "-o", "json"])).items as any[]).filter((x) => !x.metadata.deletionTimestamp);
        const ready = (x: any) => x.status.conditions?.some((c: any) => c.type === "Ready" && c.status === "True");
        for (const pod of pods()) {
            assert.equal(pod.spec.nodeName, "local-node", pod.metadata.name);
            if (pod.metadata.labels["batch.kubernetes.io/job-name"]) {
                assert.equal(pod.status.phase, "Succeeded", `${pod.metadata.name}: ${JSON.stringify(pod.status.containerStatuses)}`);
                for (const c of pod.status.containerStatuses) assert.equal(c.state.terminated.exitCode, 0, `${pod.metadata.name}/${c.name}`);
            } else assert.ok(ready(pod), `${pod.metadata.name} is not Ready: ${JSON.stringify(pod.status.conditions)}`);
        }
        const experiments = async () => (await api(p, "/api/2.0/mlflow/experiments/search?max_results=1000")).json.experiments.map((e: any) => e.experiment_id).sort();
        const before = await experiments();
        const tracking = pods().filter((x) => x.metadata.labels["app.kubernetes.io/name"] === "tracking" && !x.metadata.labels["batch.kubernetes.io/job-name"]);
        assert.equal(tracking.length, 1, tracking.map((x) => x.metadata.name).join(", "));
        kubectl(["delete", "pod", tracking[0].metadata.name, "--wait=false"]);
        await waitUntil(
            "a new tracking pod Ready",
            async () => pods().some((x) => x.metadata.labels["app.kubernetes.io/name"] === "tracking" && x.metadata.uid !== tracking[0].metadata.uid && ready(x)),
            300_000,
        );
        await waitUntil("the edge answering from the new pod", async () => (await api(p, "/health")).status === 200, 60_000);
        assert.deepEqual(await experiments(), before);
    });
});
