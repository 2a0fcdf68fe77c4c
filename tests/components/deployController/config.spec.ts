// What the controller is told (components/deployController/config.ts): a config.json of the type the
// controller reads, which its own parser accepts as written, and a Role limited to the followed models.
import assert from "assert/strict";
import { controllerConfig, controllerRules, SECRETS_DIR } from "../../../components/deployController/config";
import { parseConfig } from "../../../controller/config";
import { CONFIG_DEFAULTS } from "../../../shared/controllerConfig";

const TEMPLATE = { metadata: { labels: { app: "wine" } }, spec: { predictor: { model: { modelFormat: { name: "mlflow" } } } } };
const base = {
    trackingUri: "http://mlflow-tracking.mlflow.svc:5000",
    artifactsDestination: "s3://mlflow",
    namespace: "mlflow",
    models: [{ name: "wine", registeredModel: "wine-quality", alias: "champion", template: TEMPLATE }],
    pollIntervalSeconds: 20,
};

describe("DeployController: its config and Role", () => {
    it("writes a config.json the controller's parser accepts unchanged, with the shared defaults", () => {
        const file = controllerConfig({ ...base, webhook: { url: "http://c.mlflow.svc:8080/webhooks/mlflow", name: "hook" } });
        const parsed = parseConfig(JSON.parse(JSON.stringify(file)));
        assert.equal(parsed.pollIntervalSeconds, 20);
        assert.deepEqual(parsed.backoff, CONFIG_DEFAULTS.backoff);
        assert.deepEqual(parsed.http, CONFIG_DEFAULTS.http);
        assert.equal(parsed.webhook?.secretFile, `${SECRETS_DIR}/webhook/secret`);
        assert.deepEqual(parsed.webhook?.register, { name: "hook", url: "http://c.mlflow.svc:8080/webhooks/mlflow" });
        assert.deepEqual(parsed.models, [{ key: "wine", registeredModel: "wine-quality", alias: "champion", target: { kind: "InferenceService", namespace: "mlflow", name: "wine", template: TEMPLATE } }]);
        assert.equal(parsed.kubernetes.insecureSkipTlsVerify, false, "left out of the file, defaulted by the controller");
    });

    it("polls only without a webhook", () => {
        assert.equal(parseConfig(JSON.parse(JSON.stringify(controllerConfig(base)))).webhook, undefined);
    });

    it("lets the controller get, watch and patch only the followed InferenceServices, and create InferenceServices", () => {
        assert.deepEqual(controllerRules([{ name: "wine" }, { name: "red" }]), [
            { apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], resourceNames: ["wine", "red"], verbs: ["get", "list", "watch", "patch"] },
            { apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], verbs: ["create"] },
        ]);
    });
});
