import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { ModelServing, ModelServingArgs } from "../../../components/modelServing";
import { CONTROLLER_OWNED_FIELDS, DEPLOYMENT_MODE_ANNOTATION, TARGET_CPU_PERCENT } from "../../../components/modelServing/inferenceService";
import { KSERVE_VALUES } from "../../../components/modelServing/kserve";
import { MLSERVER_POD } from "../../../components/modelServing/runtime";
import { MLSERVER_IMAGE } from "../../../components/images";
import { servedModelSchema, servingSchema } from "../../../components/modelServing/schema";
import { find, installMocks, isSecretValue, only, out, registered, resetRegistry, settle, unsecret } from "../../harness";
import { crdErrors } from "../../../scripts/lib/crdSchema";
import { closedPortUrl, FakeMlflow, LOGGED_MODEL_ID, PASSWORD, RUN_ID, USER } from "../../fixtures/serving/fakeMlflow";

const ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService";
const SR = "kubernetes:serving.kserve.io/v1alpha1:ServingRuntime";
const CSR = "kubernetes:serving.kserve.io/v1alpha1:ClusterServingRuntime";
const SECRET = "kubernetes:core/v1:Secret";
const SA = "kubernetes:core/v1:ServiceAccount";
const RELEASE = "kubernetes:helm.sh/v3:Release";

const ACCESS_KEY = "serving-ro-key";
const SECRET_KEY = "ro-s3cr3t/with+chars";

type ModelInput = z.input<typeof servedModelSchema>;
type Overrides = Partial<Omit<ModelServingArgs, "config">> & { config?: z.input<typeof servingSchema> };

const baseArgs = ({ config, ...overrides }: Overrides = {}): ModelServingArgs => ({
    namespace: "models",
    config: servingSchema.parse({ enabled: true, ...config }),
    followedByController: false,
    objectStore: {
        endpoint: "http://mlflow-minio.mlflow.svc:9000",
        bucket: "mlflow",
        region: "us-east-1",
        accessKeyId: pulumi.secret(ACCESS_KEY),
        secretAccessKey: pulumi.secret(SECRET_KEY),
    },
    network: { clientNamespaces: ["ingress-nginx"], artifactsEgress: { to: [{ podSelector: { matchLabels: { app: "minio" } } }], ports: [{ protocol: "TCP", port: 9000 }] } },
    ...overrides,
});
const wine = (overrides: Partial<ModelInput> = {}): ModelInput => ({
    name: "wine",
    registeredModel: "wine-quality",
    storageUri: "s3://mlflow/1/models/m-abc/artifacts",
    ...overrides,
});

async function build(name: string, overrides: Overrides = {}) {
    const c = new ModelServing(name, baseArgs(overrides), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(c.runtime, c.serviceAccount, ...Object.values(c.inferenceServices), c.s3Secret);
    await out(c.models);
    return c;
}
const isvcOf = (component: string, model: string) => only(ISVC, `${component}-${model}`).inputs;

describe("ModelServing", function () {
    const mlflow = new FakeMlflow();
    const requests = mlflow.requests;
    before(async function () {
        this.timeout(120000);
        await installMocks();
        await mlflow.start();
        // Compile the (large) InferenceService schema once, outside any test's time budget.
        crdErrors({ apiVersion: "serving.kserve.io/v1beta1", kind: "InferenceService", metadata: {}, spec: { predictor: {} } });
    });
    after(() => mlflow.stop());
    beforeEach(() => {
        resetRegistry();
        requests.length = 0;
    });
    // Every InferenceService and (Cluster)ServingRuntime any test produced must match the pinned CRD schema.
    afterEach(() => {
        for (const r of registered.filter((x) => [ISVC, SR, CSR].includes(x.type))) {
            const { apiVersion, kind, metadata, spec } = r.inputs;
            assert.deepEqual(crdErrors({ apiVersion, kind, metadata, spec }), [], `${r.name} must validate against the ${kind} CRD`);
        }
    });

    it("ships a namespaced MLServer runtime for MLflow 1–3 over v2, restricted and with a read-only root", async () => {
        const c = await build("ms-rt");
        const rt = only(SR, "ms-rt-runtime").inputs;
        assert.equal(rt.metadata.namespace, "models");
        assert.deepEqual(rt.spec.supportedModelFormats, [
            { name: "mlflow", version: "1", autoSelect: true, priority: 1 },
            { name: "mlflow", version: "2", autoSelect: true, priority: 1 },
            { name: "mlflow", version: "3", autoSelect: true, priority: 1 },
        ]);
        assert.deepEqual(rt.spec.protocolVersions, ["v2"]);
        const [ctr] = rt.spec.containers;
        assert.equal(ctr.name, "kserve-container");
        assert.equal(ctr.image, MLSERVER_IMAGE);
        assert.deepEqual(ctr.command, ["mlserver", "start", "/mnt/models"]);
        const env = Object.fromEntries(ctr.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.MLSERVER_MODEL_IMPLEMENTATION, "mlserver_mlflow.MLflowRuntime");
        assert.equal(env.MLSERVER_MODEL_NAME, "{{.Name}}");
        assert.equal(env.MLSERVER_MODEL_URI, "/mnt/models");
        assert.equal(env.MLSERVER_HTTP_PORT, "8080");
        assert.equal(env.MLSERVER_GRPC_PORT, "9000");
        for (const dir of [env.MLSERVER_METRICS_DIR, env.MLSERVER_ENVIRONMENTS_DIR, env.HOME]) assert.match(dir, /^\/tmp(\/|$)/);
        assert.deepEqual(
            ctr.ports.map((p: any) => [p.name, p.containerPort]),
            [["http", 8080], ["grpc", 9000], ["metrics", 8082]],
        );
        assert.equal(rt.spec.annotations["prometheus.kserve.io/port"], "8082");
        const sc = ctr.securityContext;
        assert.equal(sc.runAsNonRoot, true);
        assert.ok(sc.runAsUser >= 10000);
        assert.equal(sc.allowPrivilegeEscalation, false);
        assert.deepEqual(sc.capabilities.drop, ["ALL"]);
        assert.equal(sc.seccompProfile.type, "RuntimeDefault");
        assert.equal(sc.readOnlyRootFilesystem, true);
        assert.deepEqual(ctr.volumeMounts, [{ name: "tmp", mountPath: "/tmp" }]);
        assert.deepEqual(rt.spec.volumes, [{ name: "tmp", emptyDir: { sizeLimit: "1Gi" } }]);
        assert.equal(ctr.workingDir, "/tmp");
        for (const kind of ["requests", "limits"]) for (const r of ["cpu", "memory", "ephemeral-storage"]) assert.ok(ctr.resources[kind][r], `${kind}.${r}`);
        assert.equal(ctr.readinessProbe.httpGet.path, "/v2/health/ready");
        assert.equal(await out(c.runtimeName), "ms-rt-runtime");
    });

    it("renders one Standard-mode InferenceService per model, pinned to the project runtime, v2, mlflow format", async () => {
        const c = await build("ms-isvc", {
            config: {
                models: [
                    wine({ replicas: { min: 2, max: 4 } }),
                    { name: "churn", registeredModel: "Churn Model", alias: "prod", storageUri: "s3://mlflow/2/models/m-def/artifacts" },
                ],
            },
        });
        const isvc = isvcOf("ms-isvc", "wine");
        assert.equal(isvc.apiVersion, "serving.kserve.io/v1beta1");
        assert.equal(isvc.metadata.name, "wine");
        assert.equal(isvc.metadata.namespace, "models");
        assert.equal(isvc.metadata.annotations[DEPLOYMENT_MODE_ANNOTATION], "Standard");
        assert.equal(isvc.metadata.annotations["mlflow-platform/registered-model"], "wine-quality");
        assert.equal(isvc.metadata.annotations["mlflow-platform/alias"], "champion");
        assert.equal(isvc.metadata.annotations["mlflow-platform/resolved-by"], "storageUri");
        const p = isvc.spec.predictor;
        assert.deepEqual(p.model, {
            modelFormat: { name: "mlflow" },
            protocolVersion: "v2",
            runtime: "ms-isvc-runtime",
            storageUri: "s3://mlflow/1/models/m-abc/artifacts",
            resources: MLSERVER_POD.resources,
        });
        assert.equal(p.serviceAccountName, "ms-isvc-serving");
        assert.equal(p.automountServiceAccountToken, false);
        assert.equal(p.securityContext.runAsNonRoot, true);
        assert.ok(p.securityContext.runAsUser >= 10000);
        assert.equal(p.securityContext.seccompProfile.type, "RuntimeDefault");
        assert.deepEqual([p.minReplicas, p.maxReplicas, p.scaleMetric, p.scaleTarget], [2, 4, "cpu", TARGET_CPU_PERCENT]);
        assert.deepEqual(p.deploymentStrategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
        assert.equal(isvc.spec.canary, undefined);
        const churn = isvcOf("ms-isvc", "churn");
        assert.equal(churn.metadata.annotations["mlflow-platform/alias"], "prod");
        assert.deepEqual([churn.spec.predictor.minReplicas, churn.spec.predictor.maxReplicas, churn.spec.predictor.scaleTarget], [1, 1, undefined]);
        assert.deepEqual(await out(c.endpoints), {
            wine: "http://wine-predictor.models.svc.cluster.local/v2/models/wine/infer",
            churn: "http://churn-predictor.models.svc.cluster.local/v2/models/churn/infer",
        });
        assert.equal(find(RELEASE).length, 0, "KServe is not installed by default");
    });

    it("keeps the read-only S3 keys secret, in a Secret annotated for KServe and listed by the ServiceAccount", async () => {
        const c = await build("ms-s3", { config: { models: [wine()] } });
        const secret = only(SECRET, "ms-s3-s3").inputs;
        assert.equal(secret.metadata.name, "ms-s3-serving-s3");
        assert.ok(isSecretValue(secret.stringData), "stringData must reach Kubernetes as a secret");
        assert.deepEqual(unsecret(secret.stringData), { AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY });
        const annotations = {
            "serving.kserve.io/s3-endpoint": "mlflow-minio.mlflow.svc:9000",
            "serving.kserve.io/s3-usehttps": "0",
            "serving.kserve.io/s3-verifyssl": "0",
            "serving.kserve.io/s3-region": "us-east-1",
        };
        assert.deepEqual(secret.metadata.annotations, annotations);
        const sa = only(SA, "ms-s3-sa").inputs;
        assert.deepEqual(sa.secrets, [{ name: "ms-s3-serving-s3" }]);
        assert.equal(sa.automountServiceAccountToken, false);
        assert.deepEqual(sa.metadata.annotations, annotations);
        assert.equal(await out(c.s3SecretName), "ms-s3-serving-s3");
        // No other object carries the keys.
        for (const r of registered.filter((x) => x.type !== SECRET)) {
            const text = JSON.stringify(r.inputs);
            assert.ok(!text.includes(SECRET_KEY) && !text.includes(ACCESS_KEY), `${r.type} ${r.name} must not contain the S3 keys`);
        }
        // Plain strings passed in are wrapped as secrets too.
        await build("ms-s3-plain", { objectStore: { ...baseArgs().objectStore, accessKeyId: "plain-id", secretAccessKey: "plain-key" } });
        const plain = only(SECRET, "ms-s3-plain-s3").inputs.stringData;
        assert.ok(isSecretValue(plain), "plain keys are wrapped as secrets");
        assert.deepEqual(unsecret(plain), { AWS_ACCESS_KEY_ID: "plain-id", AWS_SECRET_ACCESS_KEY: "plain-key" });
    });

    it("resolves the alias through the MLflow REST API at `pulumi up` (fake server, secret credentials)", async () => {
        const c = await build("ms-reg", {
            registry: { trackingUri: mlflow.url, username: USER, password: pulumi.secret(PASSWORD) },
            config: { models: [wine({ storageUri: undefined }), wine({ name: "wine-legacy", alias: "legacy", storageUri: undefined })] },
        });
        const isvc = isvcOf("ms-reg", "wine");
        assert.equal(isvc.spec.predictor.model.storageUri, `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`);
        assert.equal(isvc.metadata.annotations["mlflow-platform/model-version"], "1");
        assert.equal(isvc.metadata.annotations["mlflow-platform/resolved-by"], "registry");
        assert.equal(isvcOf("ms-reg", "wine-legacy").spec.predictor.model.storageUri, `s3://mlflow/1/${RUN_ID}/artifacts/model`);
        assert.ok(requests.some((r) => r.path.includes("alias=champion")) && requests.some((r) => r.path.includes("alias=legacy")));
        // The storage location is not a secret even though the password was; nothing leaks the password.
        assert.equal(isSecretValue(isvc.spec), false);
        assert.equal(await pulumi.isSecret(c.models), false);
        assert.deepEqual((await out(c.models)).wine, { resolvedBy: "registry", storageUri: `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`, version: "1" });
        for (const r of registered) assert.ok(!JSON.stringify(r.inputs).includes(PASSWORD), `${r.type} ${r.name} must not contain the registry password`);
    });

    it("serves the configured storageUri when the registry is unreachable", async () => {
        const c = await build("ms-down", {
            registry: { trackingUri: await closedPortUrl(), username: USER, password: PASSWORD },
            config: { models: [wine({ storageUri: "s3://mlflow/1/models/m-pinned/artifacts" })] },
        });
        assert.equal(isvcOf("ms-down", "wine").spec.predictor.model.storageUri, "s3://mlflow/1/models/m-pinned/artifacts");
        assert.equal((await out(c.models)).wine.resolvedBy, "storageUri");
    });

    it("leaves a followed model with nothing to resolve to the deploy controller: no InferenceService declared", async () => {
        const c = await build("ms-ctl", { followedByController: true, config: { models: [wine({ storageUri: undefined }), wine({ name: "red" })] } });
        assert.deepEqual(Object.keys(c.inferenceServices), ["red"]);
        // Declared, "red" leaves storageUri and the version annotation to the controller.
        assert.equal(isvcOf("ms-ctl", "red").metadata.annotations["mlflow-platform/storage-uri-owner"], "deploy-controller");
        assert.equal(registered.filter((r) => r.type === ISVC && r.name === "ms-ctl-wine").length, 0);
        assert.deepEqual((await out(c.models)).wine, { resolvedBy: "controller" });
        assert.match((await out(c.endpoints)).wine, /^http:\/\/wine-predictor\.models\.svc\.cluster\.local\/v2\/models\/wine\/infer$/);
    });

    it("splits traffic with spec.canary (Standard mode, KServe v0.20), not the Knative-only canaryTrafficPercent", async () => {
        await build("ms-canary", {
            config: { models: [wine({ replicas: { min: 4, max: 4 }, canary: { storageUri: "s3://mlflow/1/models/m-new/artifacts", trafficPercent: 25 } })] },
        });
        const spec = isvcOf("ms-canary", "wine").spec;
        assert.equal(spec.predictor.canaryTrafficPercent, undefined);
        assert.equal(spec.canary.length, 1);
        const [canary] = spec.canary;
        assert.equal(canary.trafficPercent, 25);
        assert.equal(canary.predictor.name, "canary");
        assert.equal(canary.predictor.model.storageUri, "s3://mlflow/1/models/m-new/artifacts");
        assert.equal(canary.predictor.model.name, "kserve-container", "the CRD requires model.name on a canary");
        assert.equal(canary.predictor.model.runtime, "ms-canary-runtime");
        assert.equal(canary.predictor.serviceAccountName, "ms-canary-serving");
        for (const f of ["minReplicas", "maxReplicas", "scaleTarget", "scaleMetric"]) assert.equal(canary.predictor[f], undefined, `KServe rejects ${f} on a canary`);
        assert.equal(spec.predictor.model.storageUri, "s3://mlflow/1/models/m-abc/artifacts");
    });


    it("serves a model image as a custom v2 container (image mode)", async () => {
        const image = "registry.example.com/ml/wine-quality@sha256:" + "a".repeat(64);
        const c = await build("ms-img", {
            images: { wine: image },
            config: { imageRegistry: "registry.example.com/ml", models: [wine({ storageUri: undefined, replicas: { min: 2, max: 2 } })] },
        });
        const spec = isvcOf("ms-img", "wine").spec;
        assert.equal(spec.predictor.model, undefined, "no storage initializer, no runtime");
        const [ctr] = spec.predictor.containers;
        assert.equal(ctr.name, "kserve-container");
        assert.equal(ctr.image, image);
        assert.deepEqual(ctr.command, ["mlserver", "start", "/opt/ml/model"]);
        const env = Object.fromEntries(ctr.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.PROTOCOL, "v2");
        assert.equal(env.MLSERVER_MODEL_NAME, "wine");
        assert.equal(env.MLSERVER_HTTP_PORT, "8080");
        assert.equal(ctr.ports[0].containerPort, 8080);
        assert.equal(ctr.securityContext.readOnlyRootFilesystem, true);
        assert.deepEqual(spec.predictor.volumes, [{ name: "tmp", emptyDir: { sizeLimit: "1Gi" } }]);
        assert.deepEqual((await out(c.models)).wine, { resolvedBy: "image", image });
        assert.equal(isvcOf("ms-img", "wine").metadata.annotations["mlflow-platform/resolved-by"], "image");
    });

    it("can use a ClusterServingRuntime instead", async () => {
        await build("ms-csr", { config: { runtimeScope: "cluster", models: [wine()] } });
        assert.equal(find(SR).length, 0);
        const csr = only(CSR, "ms-csr-runtime").inputs;
        assert.equal(csr.metadata.namespace, undefined, "cluster-scoped");
        assert.equal(isvcOf("ms-csr", "wine").spec.predictor.model.runtime, "ms-csr-runtime");
    });

    it("installs KServe v0.20.0 from the OCI charts in Standard mode when asked, before any custom resource", async () => {
        const c = await build("ms-helm", { config: { installKServe: true, models: [wine()] } });
        const crd = only(RELEASE, "ms-helm-kserve-crd").inputs;
        const res = only(RELEASE, "ms-helm-kserve").inputs;
        assert.deepEqual([crd.chart, crd.version, crd.namespace], ["oci://ghcr.io/kserve/charts/kserve-crd", "v0.20.0", "kserve"]);
        assert.deepEqual([res.chart, res.version, res.namespace], ["oci://ghcr.io/kserve/charts/kserve-resources", "v0.20.0", "kserve"]);
        assert.equal(res.values.kserve.controller.deploymentMode, "Standard");
        assert.deepEqual(res.values, KSERVE_VALUES);
        const kserveUrn = await out(c.kserve!.urn);
        assert.ok(only(RELEASE, "ms-helm-kserve").dependencies.includes(await out(c.kserveCrds!.urn)), "controller after CRDs");
        assert.ok(only(SR, "ms-helm-runtime").dependencies.includes(kserveUrn), "runtime after KServe");
        assert.ok(only(ISVC, "ms-helm-wine").dependencies.includes(kserveUrn), "InferenceService after KServe");
    });

});

describe("ModelServing hands storageUri over to the deploy controller", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    const model = (overrides: Partial<z.input<typeof servedModelSchema>> = {}) =>
        servedModelSchema.parse({ name: "wine", registeredModel: "wine-quality", storageUri: "s3://mlflow/1/models/m-abc/artifacts", ...overrides });
    async function serve(name: string, models: z.input<typeof servedModelSchema>[]) {
        const opts: { type: string; name: string; ignoreChanges?: string[] }[] = [];
        const c = new ModelServing(
            name,
            {
                namespace: "models",
                config: servingSchema.parse({ enabled: true, models }),
                followedByController: true,
                objectStore: { endpoint: "http://minio:9000", bucket: "mlflow", region: "us-east-1", accessKeyId: "ro", secretAccessKey: "ro-secret" },
                network: { clientNamespaces: [], artifactsEgress: {} },
            },
            {
                providers: [new k8s.Provider(`${name}-k8s`, {})],
                // Resource options are not visible to mocks; a transformation sees them as the SDK registers.
                transformations: [
                    (a) => {
                        opts.push({ type: a.type, name: a.name, ignoreChanges: a.opts.ignoreChanges });
                        return undefined;
                    },
                ],
            },
        );
        await settle(...Object.values(c.inferenceServices));
        return opts;
    }

    it("followed models: Pulumi ignores storageUri after creation and never writes the version annotation", async () => {
        const opts = await serve("ms-followed", [model(), model({ name: "red", registeredModel: "red" })]);
        for (const m of ["wine", "red"]) assert.deepEqual(opts.find((o) => o.name === `ms-followed-${m}`)?.ignoreChanges, ["spec.predictor.model.storageUri"], m);
        assert.deepEqual([...CONTROLLER_OWNED_FIELDS], ["spec.predictor.model.storageUri"]);
        const followed = only(ISVC, "ms-followed-wine").inputs;
        assert.equal(followed.spec.predictor.model.storageUri, "s3://mlflow/1/models/m-abc/artifacts", "set at creation");
        assert.equal(followed.metadata.annotations["mlflow-platform/model-version"], undefined);
        assert.equal(followed.metadata.annotations["mlflow-platform/storage-uri-owner"], "deploy-controller");
    });

});
