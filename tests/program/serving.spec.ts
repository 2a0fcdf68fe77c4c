import assert from "assert/strict";
import * as path from "path";
import { describeStack } from "./stackSpec";

import { FIXTURES } from "../harness";
describeStack(
    "serving",
    (ctx) => {
        it("serves the model and hands its storageUri to the deploy controller", () => {
            const isvc = ctx().get("InferenceService", "wine");
            assert.equal(isvc.spec.predictor.model.storageUri, "s3://mlflow/1/models/m-0123456789abcdef/artifacts");
            assert.equal(isvc.metadata.annotations["serving.kserve.io/deploymentMode"], "Standard");
            const controller = ctx().get("Deployment", "mlflow-deploy-controller");
            assert.equal(controller.spec.template.metadata.labels["mlflow-platform.io/tracking-client"], "true");
            const role = ctx().get("Role", "mlflow-deploy-controller");
            const verbs = role.rules.flatMap((r: any) => r.verbs);
            assert.ok(!verbs.includes("delete") && !verbs.includes("*"), "the controller never deletes");
        });

        it("gives the storage initializer a Secret annotated with the object store's endpoint", () => {
            const secret = ctx().get("Secret", "mlflow-serving-s3");
            assert.equal(secret.metadata.annotations["serving.kserve.io/s3-endpoint"], "mlflow-minio.mlflow-serving.svc:9000");
            assert.equal(secret.metadata.annotations["serving.kserve.io/s3-usehttps"], "0");
            assert.deepEqual(Object.keys(secret.stringData).sort(), ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]);
            assert.equal(secret.stringData.AWS_ACCESS_KEY_ID, "mlflow-serving", "the read-only user");
        });

        it("turns on the tracking server's webhooks with a stable key, and lets it reach only the controller", () => {
            const server = ctx().get("Deployment", "mlflow-server");
            const env = Object.fromEntries(server.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
            assert.equal(env.MLFLOW_WEBHOOK_ALLOWED_SCHEMES, "https,http");
            const sources = server.spec.template.spec.volumes.find((v: any) => v.name === "secret-env").projected.sources;
            assert.ok(sources.some((s: any) => s.secret.items.some((i: any) => i.path === "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")));
            const key = ctx().get("Secret", "mlflow-tracking-webhook-key").stringData.MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY;
            assert.match(key, /^[A-Za-z0-9_-]{43}=$/, "a Fernet key: 32 bytes, url-safe base64");
            const policy = ctx().get("NetworkPolicy", "mlflow-tracking");
            assert.deepEqual(policy.spec.egress.at(-1).ports, [{ protocol: "TCP", port: 8080 }]);
        });
    },
    { stackDir: path.join(FIXTURES, "stacks") },
);
