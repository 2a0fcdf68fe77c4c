import assert from "assert/strict";
import * as fs from "fs";
import * as http from "http";
import type { AddressInfo } from "net";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import {
    artifactUriToS3,
    getModelVersionByAlias,
    loggedModelId,
    RegistryError,
    resolveAlias,
    storageUriForVersion,
} from "../../../shared/mlflowRegistry";
import { z } from "zod";
import { ModelServing, ModelServingArgs } from "../../../components/modelServing";
import { canarySplit, DEPLOYMENT_MODE_ANNOTATION, TARGET_CPU_PERCENT } from "../../../components/modelServing/inferenceService";
import { KSERVE_VALUES, s3AnnotationsFor } from "../../../components/modelServing/kserve";
import { resolveServedModel } from "../../../components/modelServing/resolve";
import { MLSERVER_POD } from "../../../components/modelServing/runtime";
import { servedModelSchema, servingSchema } from "../../../components/modelServing/schema";
import { find, FIXTURES, installMocks, isSecretValue, only, out, registered, resetRegistry, settle, unsecret } from "../../harness";
import { crdErrors } from "../../../scripts/lib/crdSchema";

const ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService";
const SR = "kubernetes:serving.kserve.io/v1alpha1:ServingRuntime";
const CSR = "kubernetes:serving.kserve.io/v1alpha1:ClusterServingRuntime";
const SECRET = "kubernetes:core/v1:Secret";
const SA = "kubernetes:core/v1:ServiceAccount";
const RELEASE = "kubernetes:helm.sh/v3:Release";

const SERVING = path.join(FIXTURES, "serving");
const fixture = (f: string) => JSON.parse(fs.readFileSync(path.join(SERVING, f), "utf8"));
const LOGGED_MODEL_ID = "m-3cc3b12d25014619af91bd03b49410c0";
const RUN_ID = "7289594801234103b33807da236121b5";
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

// ---------------------------------------------------------------------------------------------------
// A fake MLflow tracking server on 127.0.0.1 that answers with responses recorded from MLflow 3.17.2,
// behind basic auth, so the alias resolution runs end to end over HTTP.
const USER = "reader";
const PASSWORD = "p@ss:w0rd/with%chars";
interface FakeRequest {
    path: string;
    authorization?: string;
}
const requests: FakeRequest[] = [];
let server: http.Server;
let registryUrl = "";

function fakeMlflow(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push({ path: `${url.pathname}${url.search}`, authorization: req.headers.authorization });
    const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`) {
        res.writeHead(401, { "www-authenticate": 'Basic realm="MLflow"' });
        res.end("Unauthorized");
        return;
    }
    if (url.pathname === "/api/2.0/mlflow/registered-models/alias") {
        if (url.searchParams.get("name") !== "wine-quality") return send(404, fixture("error-model-not-found.json"));
        const alias = url.searchParams.get("alias");
        if (alias === "champion") return send(200, fixture("alias-models-source.json"));
        if (alias === "legacy") return send(200, fixture("alias-mlflow-artifacts-source.json"));
        if (alias === "slow") return void setTimeout(() => send(200, fixture("alias-models-source.json")), 2000);
        return send(400, fixture("error-alias-not-found.json"));
    }
    if (url.pathname === `/api/2.0/mlflow/logged-models/${LOGGED_MODEL_ID}`) return send(200, fixture("logged-model.json"));
    send(404, { error_code: "ENDPOINT_NOT_FOUND", message: "no such endpoint" });
}

/** A loopback URL nothing listens on. */
async function closedPortUrl(): Promise<string> {
    const s = http.createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    return `http://127.0.0.1:${port}`;
}

describe("ModelServing", function () {
    before(async function () {
        this.timeout(120000);
        await installMocks();
        server = http.createServer(fakeMlflow);
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        registryUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        // Compile the (large) InferenceService schema once, outside any test's time budget.
        crdErrors({ apiVersion: "serving.kserve.io/v1beta1", kind: "InferenceService", metadata: {}, spec: { predictor: {} } });
    });
    after(async () => {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
    });
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

    describe("alias → s3:// storageUri mapping", () => {
        const dest = "s3://mlflow";
        const table: { source: string; loggedModel?: object; dest?: string; want: string }[] = [
            {
                source: "models:/m-abc",
                loggedModel: { model_id: "m-abc", artifact_uri: "mlflow-artifacts:/1/models/m-abc/artifacts" },
                want: "s3://mlflow/1/models/m-abc/artifacts",
            },
            {
                source: "models:/m-abc",
                loggedModel: { artifact_uri: "mlflow-artifacts:/1/models/m-abc/artifacts" },
                dest: "s3://shared-bucket/team-a/",
                want: "s3://shared-bucket/team-a/1/models/m-abc/artifacts",
            },
            { source: "models:/m-abc", loggedModel: { artifact_location: "s3://mlflow/7/models/m-abc/artifacts/" }, want: "s3://mlflow/7/models/m-abc/artifacts" },
            { source: "mlflow-artifacts:/1/0a1b/artifacts/model", want: "s3://mlflow/1/0a1b/artifacts/model" },
            { source: "mlflow-artifacts://mlflow.example.com:5000/1/0a1b/artifacts/model", want: "s3://mlflow/1/0a1b/artifacts/model" },
            { source: "s3://other-bucket/exp/models/m-x/artifacts/", want: "s3://other-bucket/exp/models/m-x/artifacts" },
        ];
        for (const row of table) {
            it(`${row.source}${row.dest ? ` with ${row.dest}` : ""} → ${row.want}`, () => {
                assert.equal(storageUriForVersion({ version: "3", source: row.source, status: "READY" }, row.dest ?? dest, row.loggedModel), row.want);
            });
        }

        const refused: { source: string; status?: string; loggedModel?: object; error: RegExp }[] = [
            { source: "runs:/0a1b/model", error: /only s3:\/\/ and mlflow-artifacts:\/ locations/ },
            { source: "file:///tmp/mlruns/1/model", error: /only s3:\/\/ and mlflow-artifacts:\/ locations/ },
            { source: "https://example.com/model.tar.gz", error: /cannot be served/ },
            { source: "models:/wine-quality/3", error: /names another registry entry/ },
            { source: "models:/m-abc", error: /logged model's artifact location is needed/ },
            { source: "models:/m-abc", loggedModel: { model_id: "m-other", artifact_uri: "s3://mlflow/x" }, error: /does not match source/ },
            { source: "models:/m-abc", loggedModel: { artifact_uri: "file:///local/mlruns/1/models/m-abc/artifacts" }, error: /only s3:\/\// },
            { source: "mlflow-artifacts:/", error: /artifact root itself/ },
            { source: "mlflow-artifacts:/1/../../etc", error: /relative path segment/ },
            { source: "s3://mlflow/1/x", status: "PENDING_REGISTRATION", error: /is PENDING_REGISTRATION, not READY/ },
            { source: "s3://Bad_Bucket/x", error: /not an s3:\/\/<bucket>/ },
        ];
        for (const row of refused) {
            it(`refuses ${row.source}${row.status ? ` (${row.status})` : ""}`, () => {
                assert.throws(
                    () => storageUriForVersion({ name: "wine-quality", version: "3", source: row.source, status: row.status ?? "READY" }, dest, row.loggedModel),
                    row.error,
                );
            });
        }

        it("maps the versions a real MLflow 3.17.2 server returned", () => {
            const logged = fixture("logged-model.json").model.info;
            const champion = fixture("alias-models-source.json").model_version;
            assert.equal(loggedModelId(champion.source), LOGGED_MODEL_ID);
            assert.equal(storageUriForVersion(champion, dest, logged), `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`);
            const legacy = fixture("alias-mlflow-artifacts-source.json").model_version;
            assert.equal(storageUriForVersion(legacy, dest), `s3://mlflow/1/${RUN_ID}/artifacts/model`);
            assert.equal(artifactUriToS3(logged.artifact_uri, "s3://mlflow"), `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`);
        });
    });

    describe("registry REST client (fake MLflow on 127.0.0.1)", () => {
        const conn = () => ({ trackingUri: registryUrl, username: USER, password: PASSWORD, timeoutMs: 1500 });

        it("resolves an alias with a models:/m-… source through the logged model, with basic auth", async () => {
            const resolved = await resolveAlias(conn(), "wine-quality", "champion", "s3://mlflow");
            assert.deepEqual(resolved, {
                registeredModel: "wine-quality",
                alias: "champion",
                version: "1",
                source: `models:/${LOGGED_MODEL_ID}`,
                storageUri: `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`,
            });
            assert.deepEqual(
                requests.map((r) => r.path),
                ["/api/2.0/mlflow/registered-models/alias?name=wine-quality&alias=champion", `/api/2.0/mlflow/logged-models/${LOGGED_MODEL_ID}`],
            );
            assert.ok(requests.every((r) => r.authorization?.startsWith("Basic ")));
        });

        it("resolves an mlflow-artifacts:/ source without a second call", async () => {
            const resolved = await resolveAlias(conn(), "wine-quality", "legacy", "s3://mlflow");
            assert.equal(resolved.version, "3");
            assert.equal(resolved.storageUri, `s3://mlflow/1/${RUN_ID}/artifacts/model`);
            assert.equal(requests.length, 1);
        });

        it("reports MLflow's own error message, the status and the error code", async () => {
            await assert.rejects(resolveAlias(conn(), "wine-quality", "nope", "s3://mlflow"), (e: RegistryError) => {
                assert.equal(e.reason, "http");
                assert.equal(e.status, 400);
                assert.equal(e.errorCode, "INVALID_PARAMETER_VALUE");
                assert.match(e.message, /answered 400: Registered model alias nope not found/);
                return true;
            });
            await assert.rejects(getModelVersionByAlias(conn(), "nope", "champion"), /404: Registered Model with name=nope not found/);
        });

        it("fails on bad credentials without echoing them", async () => {
            await assert.rejects(resolveAlias({ ...conn(), password: "wrong-password" }, "wine-quality", "champion", "s3://mlflow"), (e: Error) => {
                assert.match(e.message, /answered 401/);
                assert.doesNotMatch(e.message, /wrong-password/);
                return true;
            });
        });

        it("gives up on an unreachable server and on a slow one (timeout)", async () => {
            await assert.rejects(
                resolveAlias({ ...conn(), trackingUri: await closedPortUrl() }, "wine-quality", "champion", "s3://mlflow"),
                (e: RegistryError) => e.reason === "unreachable" && /unreachable \(ECONNREFUSED\)/.test(e.message),
            );
            const started = Date.now();
            await assert.rejects(
                resolveAlias({ ...conn(), timeoutMs: 300 }, "wine-quality", "slow", "s3://mlflow"),
                (e: RegistryError) => e.reason === "unreachable" && /no answer within 300 ms/.test(e.message),
            );
            assert.ok(Date.now() - started < 1500, "the timeout must be short");
        });
    });

    describe("resolveServedModel (the Promise behind each storageUri)", () => {
        const base = () => ({
            component: "ms",
            model: "wine",
            registeredModel: "wine-quality",
            alias: "champion",
            artifactsDestination: "s3://mlflow",
            warn: (m: string) => warnings.push(m),
        });
        const warnings: string[] = [];
        beforeEach(() => (warnings.length = 0));

        it("prefers the registry, falls back to storageUri with a warning, and otherwise names the model and what to set", async () => {
            const registry = { trackingUri: registryUrl, username: USER, password: PASSWORD, timeoutMs: 1000 };
            assert.deepEqual(await resolveServedModel({ ...base(), registry, storageUri: "s3://mlflow/old" }), {
                resolvedBy: "registry",
                storageUri: `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`,
                version: "1",
            });
            assert.equal(warnings.length, 0);

            const down = { ...registry, trackingUri: await closedPortUrl() };
            assert.deepEqual(await resolveServedModel({ ...base(), registry: down, storageUri: "s3://mlflow/1/models/m-x/artifacts/" }), {
                resolvedBy: "storageUri",
                storageUri: "s3://mlflow/1/models/m-x/artifacts",
            });
            assert.match(warnings[0], /could not resolve wine-quality@champion .*unreachable.*serving the configured storageUri/);

            await assert.rejects(
                resolveServedModel({ ...base(), registry: down }),
                /model "wine": could not resolve wine-quality@champion through the MLflow registry \(.*unreachable.*\) and no storageUri is set.*set serving\.models\[\]\.storageUri for "wine"/,
            );
            await assert.rejects(resolveServedModel({ ...base() }), /model "wine" \(wine-quality@champion\) has no storageUri and no MLflow tracking URL.*serving\.resolveAliases/);
            await assert.rejects(resolveServedModel({ ...base(), storageUri: "https://bucket/x" }), /storageUri "https:\/\/bucket\/x" is invalid/);
        });
    });

    describe("component", () => {
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
            assert.equal(ctr.image, "docker.io/seldonio/mlserver:1.7.1-mlflow");
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
                registry: { trackingUri: registryUrl, username: USER, password: pulumi.secret(PASSWORD) },
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

        it("computes KServe's replica-based canary split", () => {
            assert.deepEqual(canarySplit(4, 25), { canaryReplicas: 1, stableReplicas: 3, effectivePercent: 25 });
            assert.deepEqual(canarySplit(10, 10), { canaryReplicas: 1, stableReplicas: 9, effectivePercent: 10 });
            assert.deepEqual(canarySplit(1, 10), { canaryReplicas: 1, stableReplicas: 1, effectivePercent: 50 });
            assert.deepEqual(canarySplit(3, 50), { canaryReplicas: 2, stableReplicas: 1, effectivePercent: 67 });
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

        it("derives KServe's s3 annotations from the endpoint URL", () => {
            assert.deepEqual(s3AnnotationsFor("http://minio:9000", "us-east-1"), {
                "serving.kserve.io/s3-endpoint": "minio:9000",
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-verifyssl": "0",
                "serving.kserve.io/s3-region": "us-east-1",
            });
            assert.equal(s3AnnotationsFor("https://s3.example.com:8443/", "x")["serving.kserve.io/s3-endpoint"], "s3.example.com:8443");
            assert.equal(s3AnnotationsFor("https://s3.example.com", "x")["serving.kserve.io/s3-verifyssl"], "1", "TLS is verified on https endpoints");
            assert.throws(() => s3AnnotationsFor("minio:9000", "x"), /must be http:\/\/ or https:\/\//);
            assert.throws(() => s3AnnotationsFor("not a url", "x"), /is not a URL/);
        });
    });
});
