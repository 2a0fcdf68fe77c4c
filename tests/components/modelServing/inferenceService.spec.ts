// The InferenceService of one served model as pure functions (components/modelServing/inferenceService.ts):
// the template the deploy controller creates a missing one from, and KServe's canary split.
import assert from "assert/strict";
import { canarySplit, inferenceServiceTemplate } from "../../../components/modelServing/inferenceService";
import { servedModelSchema } from "../../../components/modelServing/schema";
import { crdErrors } from "../../../scripts/lib/crdSchema";

const model = (overrides: Record<string, unknown> = {}) =>
    servedModelSchema.parse({ name: "wine", registeredModel: "wine-quality", storageUri: "s3://mlflow/1/models/m-abc/artifacts", ...overrides });

describe("ModelServing: the InferenceService", function () {
    this.timeout(60000); // compiling the InferenceService CRD schema

    it("inferenceServiceTemplate() + the controller's storageUri is a valid KServe v0.20 InferenceService", () => {
        const t: any = inferenceServiceTemplate(model({ replicas: { min: 2, max: 3 } }), { runtime: "mlflow-mlserver", serviceAccountName: "mlflow-serving" });
        assert.equal(t.spec.predictor.model.storageUri, undefined);
        assert.equal(t.metadata.annotations["mlflow-platform/model-version"], undefined);
        const obj = { apiVersion: "serving.kserve.io/v1beta1", kind: "InferenceService", metadata: { ...t.metadata, name: "wine", namespace: "models" }, spec: JSON.parse(JSON.stringify(t.spec)) };
        obj.spec.predictor.model.storageUri = "s3://mlflow/1/models/m-abc/artifacts";
        assert.deepEqual(crdErrors(obj), []);
        assert.equal(t.spec.predictor.minReplicas, 2);
        assert.equal(t.spec.predictor.serviceAccountName, "mlflow-serving");
    });

    it("computes KServe's replica-based canary split", () => {
        assert.deepEqual(canarySplit(4, 25), { canaryReplicas: 1, stableReplicas: 3, effectivePercent: 25 });
        assert.deepEqual(canarySplit(10, 10), { canaryReplicas: 1, stableReplicas: 9, effectivePercent: 10 });
        assert.deepEqual(canarySplit(1, 10), { canaryReplicas: 1, stableReplicas: 1, effectivePercent: 50 });
        assert.deepEqual(canarySplit(3, 50), { canaryReplicas: 2, stableReplicas: 1, effectivePercent: 67 });
    });
});
