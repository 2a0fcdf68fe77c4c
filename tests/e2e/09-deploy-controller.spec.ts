// (9) The deploy controller drives serving: it runs as its rendered Deployment says (node on the bundle
// from its ConfigMap) against the local Kubernetes API, follows wine-quality@champion, and patches the
// InferenceService when the alias moves; the local KServe stand-in then serves the new version. Moving
// the alias to a version trained on shifted labels changes the predictions; moving it back restores them.
import assert from "assert/strict";
import type { LocalPlatform } from "../../scripts/local/platform";
import { api, platformUp, runPython, timed, wineExample, wineRows } from "./fixture";

const MODEL = "wine-quality";

describe("e2e (9): the deploy controller follows the alias into serving", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;
    let rows: Awaited<ReturnType<typeof wineRows>>;
    let champion: string;

    /** One v2 inference on the sample rows through the running model server. */
    async function predict(): Promise<number[]> {
        const served = p.serving!.served.get(MODEL)!;
        const res = await fetch(`http://127.0.0.1:${served.ports.http}/v2/models/${MODEL}/infer`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ inputs: rows.inputs }),
        });
        const body = (await res.json()) as any;
        assert.equal(res.status, 200, JSON.stringify(body));
        return body.outputs[0].data;
    }
    const agreeing = (got: number[], want: number[]) => got.filter((x, i) => x === want[i]).length;

    /** Writes of the controller to the InferenceService, as the local API recorded them. */
    const writes = () => p.kubeApi!.writes(true).filter((r) => r.path.startsWith(p.kubeApi!.isvcPath(p.stack.namespace, MODEL)) || r.body?.metadata?.name === MODEL);

    async function moveAlias(version: string): Promise<void> {
        const res = await api(p, "/api/2.0/mlflow/registered-models/alias", { body: { name: MODEL, alias: "champion", version } });
        assert.equal(res.status, 200, res.text);
        await timed("alias → served", () => p.serving!.waitForModel(MODEL, 600_000, version));
    }

    /** A sample of the controller's /metrics (its Service's metrics port), 0 when absent; `labels` as rendered, e.g. `model="x"`. */
    async function controllerMetric(name: string, labels = ""): Promise<number> {
        const text = await (await fetch(`http://127.0.0.1:${p.servicePort("mlflow-deploy-controller", 9090)}/metrics`)).text();
        const line = text.split("\n").find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ""} `));
        return line === undefined ? 0 : Number(line.split(" ").pop());
    }

    before(async () => {
        p = await platformUp();
        await wineExample(p);
        champion = (await api(p, `/api/2.0/mlflow/registered-models/alias?name=${MODEL}&alias=champion`)).json.model_version.version;
        await p.serving!.waitForModel(MODEL, 600_000, champion);
        rows = await wineRows(p, 8);
    });

    it("runs the controller from the rendered Deployment, following what the stack configures", async () => {
        assert.deepEqual(p.followed, [`${MODEL}@champion`]);
        const live = p.kubeApi!.list("InferenceService").find((o) => o.metadata.name === MODEL);
        assert.equal(live.metadata.annotations["mlflow-platform/model-version"], champion);
        assert.equal(live.metadata.labels["app.kubernetes.io/managed-by"], "mlflow-deploy-controller");
        assert.equal(await controllerMetric("mlflow_deploy_controller_served_version", `model="${MODEL}"`), Number(champion));
    });

    it("moves serving to the new version when the alias moves, with one patch, and back again", async () => {
        const before = await predict();
        assert.ok(agreeing(before, rows.labels) >= 7, `champion v${champion}: ${before} vs labels ${rows.labels}`);
        const shifted = (await runPython(p, ["tests/e2e/clients/log_shifted_model.py", MODEL])).version as string;
        assert.notEqual(shifted, champion);
        const writesBefore = writes().length;

        await moveAlias(shifted);
        const after = await predict();
        const shiftedLabels = rows.labels.map((y) => (y + 1) % 3);
        assert.ok(agreeing(after, shiftedLabels) >= 7, `v${shifted} must predict the shifted classes: ${after} vs ${shiftedLabels}`);
        const moved = writes().slice(writesBefore);
        assert.deepEqual(moved.map((r) => [r.method, r.query.fieldManager]), [["PATCH", "mlflow-deploy-controller"]]);
        assert.equal(moved[0].body.metadata.annotations["mlflow-platform/model-version"], shifted);
        assert.equal(p.serving!.served.get(MODEL)!.version, shifted);

        await moveAlias(champion);
        assert.deepEqual(await predict(), before, "the champion's predictions are back");
        assert.equal(writes().length, writesBefore + 2, "one patch per move, none in between");
        assert.equal(await controllerMetric("mlflow_deploy_controller_served_version", `model="${MODEL}"`), Number(champion));
    });

    it("learns of the moves from MLflow's signed webhooks, not only from polling", async () => {
        assert.equal(await controllerMetric("mlflow_deploy_controller_webhook_registered"), 1);
        const accepted = await controllerMetric("mlflow_deploy_controller_webhook_deliveries_total", 'result="accepted"');
        assert.ok(accepted >= 2, `${accepted} webhook deliveries accepted`);
    });
});
