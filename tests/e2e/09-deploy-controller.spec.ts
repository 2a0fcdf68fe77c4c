// (9) The deploy controller drives serving: it runs as its rendered Deployment says (node on the bundle
// from its ConfigMap) against the platform's real Kubernetes API server (its ServiceAccount's token, the
// stack's Role), follows wine-quality@champion, and patches the
// InferenceService when the alias moves; the local KServe stand-in then serves the new version. Moving
// the alias to a version trained on shifted labels changes the predictions; moving it back restores them.
import assert from "assert/strict";
import type { LocalPlatform } from "../../scripts/local/platform";
import { controllerOwnsStorageUri } from "../fixtures/controller/kubernetes";
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

    const controllerUser = () => `system:serviceaccount:${p.stack.namespace}:mlflow-deploy-controller`;
    /** Successful writes of the controller to the InferenceService, as the API server's audit log recorded them. */
    const writes = () =>
        p.cluster!.inferenceServiceWrites({ user: controllerUser(), onlySuccessful: true }).filter((r) => r.path.endsWith(`/inferenceservices/${MODEL}`) || r.body?.metadata?.name === MODEL);
    const live = async () => (await p.cluster!.inferenceServices(p.stack.namespace)).find((o) => o.metadata.name === MODEL);

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
        const isvc = await live();
        assert.equal(isvc.metadata.annotations["mlflow-platform/model-version"], champion);
        assert.equal(isvc.metadata.labels["app.kubernetes.io/managed-by"], "mlflow-deploy-controller");
        // On a real API server the controller's field manager owns the field it serves from (its create is
        // recorded as an Update, its server-side applies as an Apply: checked after a move below).
        assert.ok(controllerOwnsStorageUri(isvc, "Update") || controllerOwnsStorageUri(isvc, "Apply"), JSON.stringify(isvc.metadata.managedFields.map((m: any) => [m.manager, m.operation])));
    });

    it("holds a token of its own ServiceAccount that the stack's Role confines (a real 403 outside it)", async () => {
        const token = await p.cluster!.serviceAccountToken(p.stack.namespace, "mlflow-deploy-controller", 600);
        const client = p.cluster!.controlPlane.client({ token });
        try {
            const own = await client.request("GET", `/apis/serving.kserve.io/v1beta1/namespaces/${p.stack.namespace}/inferenceservices/${MODEL}`);
            assert.equal(own.status, 200, JSON.stringify(own.body));
            const secrets = await client.request("GET", `/api/v1/namespaces/${p.stack.namespace}/secrets`);
            assert.equal(secrets.status, 403, JSON.stringify(secrets.body));
            assert.match(secrets.body.message, new RegExp(`User "${controllerUser()}" cannot list resource "secrets"`));
            const other = await client.request("GET", `/apis/serving.kserve.io/v1beta1/namespaces/${p.stack.namespace}/inferenceservices/not-followed`);
            assert.equal(other.status, 403, "a model it does not follow is outside its Role");
        } finally {
            client.close();
        }
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
        assert.deepEqual(moved.map((r) => [r.verb, r.query.fieldManager]), [["patch", "mlflow-deploy-controller"]]);
        assert.equal(moved[0].body.metadata.annotations["mlflow-platform/model-version"], shifted);
        assert.equal(p.serving!.served.get(MODEL)!.version, shifted);
        assert.ok(controllerOwnsStorageUri(await live(), "Apply"), "the controller's server-side apply does not own spec.predictor.model.storageUri");

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
