// Service tier: the deploy controller, bundled and laid out as its ConfigMap ships it, runs as a real
// process against a real MLflow 3.17.2 server (PyPI, sqlite backend, 127.0.0.1) and the real
// kube-apiserver of the cluster tier (KServe's pinned InferenceService CRD; the controller's own
// ServiceAccount token, confined by the Role the component renders), reached through a forwarding proxy
// that can answer 409 or 500 for a while instead (tests/fixtures/controller/faultProxy.ts). MLflow
// delivers real signed webhooks; the tests assert the exact create and patch requests the API server's
// audit log recorded, and that failures (MLflow down, Kubernetes 409/500) end in convergence without
// redundant writes.
import assert from "assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { kubeConfig, InferenceServiceTargetImpl } from "../../controller/targets/kube";
import type { Apply } from "../../controller/targets/types";
import { signDelivery } from "../../controller/webhook";
import { freePort } from "../../scripts/lib/ports";
import { ControllerKubernetes, controllerOwnsStorageUri } from "../fixtures/controller/kubernetes";
import { ensureMlflowVenv, MlflowServer } from "../fixtures/controller/mlflow";
import { ControllerProcess, eventually, layOutBundle } from "../fixtures/controller/process";
import { INSTALL_TIMEOUT_MS } from "../harness";

const NS = "serving";
const BUCKET = "s3://mlflow";
const SECRET = "webhook-secret-for-tests-0123456789";

describe("deploy controller against MLflow 3.17.2 (service tier)", function () {
    this.timeout(60000);
    let dir: string;
    let mlflow: MlflowServer;
    let kube: ControllerKubernetes;
    let secretFile: string;
    let v1: { version: string; modelId: string; artifactUri: string };
    let v2: { version: string; source: string };
    const running: ControllerProcess[] = [];

    before(async function () {
        this.timeout(INSTALL_TIMEOUT_MS);
        ensureMlflowVenv();
        dir = mkdtempSync(path.join(tmpdir(), "deploy-controller-"));
        secretFile = path.join(dir, "webhook-secret");
        writeFileSync(secretFile, SECRET);
        // The control plane and MLflow start side by side; each is stopped in `after` if it started.
        const [k, m] = await Promise.allSettled([
            ControllerKubernetes.start({ dir, namespace: NS, names: ["wine", "wine-faults", "wine-target"], log: (l) => console.log(`      [kubernetes] ${l}`) }),
            (async () => {
                mlflow = new MlflowServer(path.join(dir, "mlflow"), await freePort());
                await mlflow.start();
                v1 = await mlflow.registerLoggedModelVersion("wine");
                v2 = await mlflow.registerRunVersion("wine");
                await mlflow.setAlias("wine", "champion", v1.version);
            })(),
        ]);
        if (k.status === "fulfilled") kube = k.value;
        for (const r of [k, m]) if (r.status === "rejected") throw r.reason;
        layOutBundle(path.join(dir, "controller"));
    });

    afterEach(function () {
        if (this.currentTest?.state !== "failed") return;
        for (const c of running) console.log(c.logs.slice(-40).map((l) => JSON.stringify(l)).join("\n"), c.stderr.join(""));
        console.log(kube.proxy.requests.slice(-20).map((r) => `${r.method} ${r.path} ${r.status}${r.injected ? " (injected)" : ""}`).join("\n"));
    });

    after(async function () {
        this.timeout(120_000); // the API server can take 40 s to exit
        for (const c of running) await c.stop("SIGKILL").catch(() => undefined);
        await Promise.all([mlflow?.stop(), kube?.stop()]);
        if (dir) rmSync(dir, { recursive: true, force: true });
    });

    async function startController(name: string, overrides: Record<string, unknown>): Promise<ControllerProcess> {
        const c = new ControllerProcess(path.join(dir, "controller"), {
            mlflow: { trackingUri: mlflow.url, artifactsDestination: BUCKET, timeoutMs: 2000 },
            backoff: { initialMs: 200, maxMs: 1500 },
            http: { host: "127.0.0.1", webhookPort: 0, metricsPort: 0 },
            kubernetes: kube.config,
            models: [{ registeredModel: "wine", alias: "champion", target: { kind: "InferenceService", namespace: NS, name } }],
            logLevel: "debug",
            ...overrides,
        });
        running.push(c);
        await c.start();
        return c;
    }

    /** The controller's writes to `name` that reached the API server (its audit log). */
    const received = (name: string) => kube.received(name);
    const storageUriOf = async (name: string) => (await kube.live(name))?.spec?.predictor?.model?.storageUri;
    const versionOf = async (name: string) => (await kube.live(name))?.metadata?.annotations?.["mlflow-platform/model-version"];
    const v1Uri = () => `${BUCKET}/0/models/${v1.modelId}/artifacts`;
    const v2Uri = () => `${BUCKET}/${v2.source.replace(/^mlflow-artifacts:\/+/, "")}`;

    it("creates the InferenceService at v1, follows a signed webhook to v2 with one patch, refuses forged webhooks", async () => {
        const webhookPort = await freePort();
        const hookUrl = `http://127.0.0.1:${webhookPort}/webhooks/mlflow`;
        const c = await startController("wine", {
            pollIntervalSeconds: 3600, // only the start pass and webhooks can trigger a reconcile
            http: { host: "127.0.0.1", webhookPort, metricsPort: 0 },
            webhook: { secretFile, register: { name: "deploy-controller-test", url: hookUrl } },
        });

        // Start pass: the alias points at v1 (an MLflow 3 logged model) and no InferenceService exists.
        await eventually(() => received("wine").length === 1, 10000, "the create");
        const [create] = received("wine");
        assert.equal(create.verb, "create");
        assert.equal(create.code, 201);
        assert.equal(create.path, `/apis/serving.kserve.io/v1beta1/namespaces/${NS}/inferenceservices`);
        assert.equal(create.query.fieldManager, "mlflow-deploy-controller");
        assert.equal(create.body.spec.predictor.model.storageUri, v1Uri(), "models:/m-… maps to the logged model's artifacts under the bucket");
        assert.equal(create.body.metadata.annotations["mlflow-platform/model-version"], v1.version);
        assert.equal(create.body.metadata.annotations["serving.kserve.io/deploymentMode"], "Standard");
        assert.equal((await c.get("/readyz")).status, 200);

        // The controller registered itself with MLflow.
        await c.waitForLog((l) => l.msg === "registered the MLflow webhook", 10000);
        const hooks = (await mlflow.api("GET", "webhooks")).webhooks;
        const mine = hooks.find((w: any) => w.name === "deploy-controller-test");
        assert.equal(mine.url, hookUrl);
        assert.deepEqual(mine.events.map((e: any) => `${e.entity}.${e.action}`).sort(), ["MODEL_VERSION_ALIAS.CREATED", "MODEL_VERSION_ALIAS.DELETED"]);
        // MLflow's own test delivery (example_model) is signed with the same secret and accepted as "not followed".
        const test = await mlflow.api("POST", `webhooks/${mine.webhook_id}/test`, {});
        assert.equal(test.result.success, true, JSON.stringify(test));

        // Move the alias: MLflow delivers a signed model_version_alias.created; exactly one patch follows.
        await mlflow.setAlias("wine", "champion", v2.version);
        await eventually(() => received("wine").length === 2, 10000, "the patch after the webhook");
        const patch = received("wine")[1];
        assert.equal(patch.verb, "patch");
        assert.equal(patch.code, 200);
        assert.equal(patch.path, kube.isvcPath("wine"));
        assert.equal(kube.sent("wine")[1].contentType, "application/apply-patch+yaml", "server-side apply");
        assert.deepEqual(patch.query, { fieldManager: "mlflow-deploy-controller", force: "true" });
        assert.deepEqual(patch.body, {
            apiVersion: "serving.kserve.io/v1beta1",
            kind: "InferenceService",
            metadata: { name: "wine", namespace: NS, annotations: { "mlflow-platform/model-version": v2.version } },
            spec: { predictor: { model: { storageUri: v2Uri() } } },
        });
        assert.equal(await storageUriOf("wine"), v2Uri(), "mlflow-artifacts:/… maps into the bucket");
        assert.ok(controllerOwnsStorageUri(await kube.live("wine"), "Apply"), "the API server records the controller's apply as the owner of storageUri");
        const accepted = await c.waitForLog((l) => l.msg === "webhook accepted");
        assert.equal(accepted.registeredModel, "wine");
        assert.equal(accepted.version, v2.version);

        // Forged deliveries: wrong secret, no signature, stale timestamp. 401, and not one Kubernetes call.
        const requestsBefore = kube.proxy.requests.length;
        const body = JSON.stringify({ entity: "model_version_alias", action: "created", timestamp: new Date().toISOString(), data: { name: "wine", alias: "champion", version: v1.version } });
        const now = String(Math.floor(Date.now() / 1000));
        const forged: Record<string, string>[] = [
            { "x-mlflow-delivery-id": "forged-1", "x-mlflow-timestamp": now, "x-mlflow-signature": signDelivery("not-the-secret", "forged-1", now, body) },
            { "x-mlflow-delivery-id": "forged-2", "x-mlflow-timestamp": now },
            { "x-mlflow-delivery-id": "forged-3", "x-mlflow-timestamp": "1000", "x-mlflow-signature": signDelivery(SECRET, "forged-3", "1000", body) },
        ];
        for (const headers of forged) {
            const r = await fetch(hookUrl, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
            assert.equal(r.status, 401);
        }
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(kube.proxy.requests.length, requestsBefore, "a forged webhook must not even cause a read");
        assert.equal(await storageUriOf("wine"), v2Uri());
        const m = await c.metrics();
        assert.equal(m.get('mlflow_deploy_controller_webhook_deliveries_total{result="rejected"}'), 3);
        assert.ok(m.get('mlflow_deploy_controller_webhook_deliveries_total{result="accepted"}')! >= 1);
        assert.equal(m.get('mlflow_deploy_controller_patches_total{model="wine",operation="create"}'), 1);
        assert.equal(m.get('mlflow_deploy_controller_patches_total{model="wine",operation="patch"}'), 1);
        assert.equal(m.get('mlflow_deploy_controller_served_version{model="wine"}'), Number(v2.version));

        // Setting the alias to the version already served: a pass, no write.
        const reconciles = m.get('mlflow_deploy_controller_reconciles_total{model="wine",result="success"}')!;
        await mlflow.setAlias("wine", "champion", v2.version);
        await eventually(async () => (await c.metrics()).get('mlflow_deploy_controller_reconciles_total{model="wine",result="success"}')! > reconciles, 10000, "a pass");
        assert.equal(received("wine").length, 2, "no patch when serving already matches");

        // Removing the alias leaves serving as it is, with a warning.
        await mlflow.deleteAlias("wine", "champion");
        const warning = await c.waitForLog((l) => l.level === "warn" && /does not exist.*left as it is/.test(l.msg), 10000);
        assert.equal(warning.model, "wine");
        assert.equal(received("wine").length, 2);
        assert.equal(await storageUriOf("wine"), v2Uri());
        assert.equal((await c.metrics()).get('mlflow_deploy_controller_alias_missing{model="wine"}'), 1);

        // Pointing it back at v1: one patch, back to v1.
        await mlflow.setAlias("wine", "champion", v1.version);
        await eventually(() => received("wine").length === 3, 10000, "the patch back to v1");
        assert.equal(await storageUriOf("wine"), v1Uri());
        assert.equal(await versionOf("wine"), v1.version);
        assert.deepEqual(kube.sent("wine").map((r) => [r.method, r.status]), [["POST", 201], ["PATCH", 200], ["PATCH", 200]], "every write the controller sent reached the server and succeeded");

        // SIGTERM: graceful stop, exit 0.
        const exit = await c.stop("SIGTERM");
        assert.deepEqual(exit, { code: 0, signal: null });
        assert.ok(c.logs.some((l) => l.msg === "stopped"));
        assert.ok(c.logs.every((l) => typeof l.time === "string" && typeof l.level === "string"), "every line is structured JSON");
    });

    it("survives MLflow going away and Kubernetes answering 409 and 500, then converges without redundant patches", async function () {
        this.timeout(90000);
        await mlflow.setAlias("wine", "champion", v1.version);
        const c = await startController("wine-faults", { pollIntervalSeconds: 1 });
        await eventually(() => received("wine-faults").length === 1, 10000, "the create");
        assert.equal(await storageUriOf("wine-faults"), v1Uri());

        // MLflow stops: passes fail at the registry and back off; the process stays up and healthy.
        await mlflow.stop();
        await eventually(async () => ((await c.metrics()).get('mlflow_deploy_controller_errors_total{model="wine-faults",stage="registry"}') ?? 0) >= 3, 20000, "registry errors");
        assert.equal((await c.get("/healthz")).status, 200);
        const retries = c.logs.filter((l) => l.msg === "retrying after backoff" && l.model === "wine-faults");
        assert.ok(retries.length >= 3);
        for (const r of retries) assert.ok(r.delayMs <= 1500, "backoff is bounded");
        assert.equal(kube.sent("wine-faults").length, 1, "nothing written while the registry is unreachable");

        // MLflow comes back (same database), the alias moves: one patch.
        await mlflow.start();
        await c.waitForLog((l) => l.msg === "recovered" && l.model === "wine-faults", 15000);
        await mlflow.setAlias("wine", "champion", v2.version);
        await eventually(async () => (await storageUriOf("wine-faults")) === v2Uri(), 10000, "the patch to v2");
        assert.equal(received("wine-faults").length, 2);

        // Kubernetes answers 409 three times, then 500 three times, to the writes (the proxy answers them:
        // they never reach the API server).
        let failures = 0;
        const unfail = kube.proxy.fail((r) => {
            if (r.method !== "PATCH" || r.path !== kube.isvcPath("wine-faults") || failures >= 6) return undefined;
            failures += 1;
            return failures <= 3 ? 409 : 500;
        });
        await mlflow.setAlias("wine", "champion", v1.version);
        await eventually(async () => (await storageUriOf("wine-faults")) === v1Uri(), 30000, "convergence to v1 after the faults");
        unfail();
        const patches = kube.sent("wine-faults").filter((r) => r.method === "PATCH");
        assert.deepEqual(
            patches.map((r) => [r.status, r.injected]),
            [[200, false], [409, true], [409, true], [409, true], [500, true], [500, true], [500, true], [200, false]],
            "each failed write retried until one succeeded",
        );
        assert.deepEqual(received("wine-faults").map((w) => [w.verb, w.code]), [["create", 201], ["patch", 200], ["patch", 200]], "what reached the API server");
        // Quiet once converged: more passes, no more writes.
        const m0 = (await c.metrics()).get('mlflow_deploy_controller_reconciles_total{model="wine-faults",result="success"}')!;
        await eventually(async () => (await c.metrics()).get('mlflow_deploy_controller_reconciles_total{model="wine-faults",result="success"}')! >= m0 + 3, 15000, "three more passes");
        assert.equal(kube.sent("wine-faults").length, 9, "no redundant patch after convergence (1 create + 8 patches)");
        assert.equal(received("wine-faults").length, 3);
        assert.ok(((await c.metrics()).get('mlflow_deploy_controller_errors_total{model="wine-faults",stage="kubernetes"}') ?? 0) >= 6);
        assert.ok(((await c.metrics()).get('mlflow_deploy_controller_seconds_since_last_successful_sync{model="wine-faults"}') ?? 99) < 5);

        // Reads failing (500) are retried too, and cause no write.
        const mark = c.logs.length;
        const unfailGets = kube.proxy.fail((r) => (r.method === "GET" && r.path === kube.isvcPath("wine-faults") ? 500 : undefined));
        await eventually(async () => ((await c.metrics()).get('mlflow_deploy_controller_errors_total{model="wine-faults",stage="kubernetes"}') ?? 0) >= 9, 15000, "read errors");
        unfailGets();
        await c.waitForLog((l) => l.msg === "recovered" && l.model === "wine-faults" && l.afterFailures >= 3, 15000, mark);
        assert.equal(kube.sent("wine-faults").length, 9);
        assert.equal(received("wine-faults").length, 3);
        assert.deepEqual(await c.stop("SIGTERM"), { code: 0, signal: null });
    });

    it("the InferenceService target through client-node, in process: 404 → absent, create from a template, apply of its two fields only; real 409, 403, injected 503", async () => {
        const kc = kubeConfig(kube.config);
        const apply = (version: string, artifact: string): Apply => ({ version, artifact, storageUri: artifact, source: "models:/m-x", registeredModel: "wine-quality", alias: "champion" });
        const template = {
            metadata: { labels: { team: "ml" }, annotations: { "serving.kserve.io/deploymentMode": "Standard" } },
            spec: { predictor: { serviceAccountName: "kserve-s3", minReplicas: 2, model: { modelFormat: { name: "mlflow" }, protocolVersion: "v2", runtime: "mlserver" } } },
        };
        const t = new InferenceServiceTargetImpl({ kind: "InferenceService", namespace: NS, name: "wine-target", template }, kc, 2000);
        assert.deepEqual(await t.observe(), { exists: false });
        await t.create(apply("1", "s3://mlflow/1/models/m-a/artifacts"));
        const post = await eventually(() => received("wine-target")[0], 5000, "the create in the audit log");
        assert.equal(post.verb, "create");
        assert.equal(post.path, kube.isvcPath());
        assert.equal(post.query.fieldManager, "mlflow-deploy-controller");
        const created = await kube.live("wine-target");
        assert.equal(created.spec.predictor.serviceAccountName, "kserve-s3", "template kept");
        assert.equal(created.spec.predictor.model.runtime, "mlserver");
        assert.equal(created.spec.predictor.model.storageUri, "s3://mlflow/1/models/m-a/artifacts");
        assert.equal(created.metadata.labels.team, "ml");
        assert.equal(created.metadata.annotations["mlflow-platform/model-version"], "1");
        assert.deepEqual(await t.observe(), { exists: true, artifact: "s3://mlflow/1/models/m-a/artifacts", version: "1" });

        await t.patch(apply("2", "s3://mlflow/1/models/m-b/artifacts"));
        const patch = await eventually(() => received("wine-target")[1], 5000, "the patch in the audit log");
        assert.equal(kube.sent("wine-target")[1].contentType, "application/apply-patch+yaml");
        assert.deepEqual(patch.query, { fieldManager: "mlflow-deploy-controller", force: "true" });
        assert.deepEqual(Object.keys(patch.body.spec), ["predictor"]);
        assert.deepEqual(patch.body.spec.predictor, { model: { storageUri: "s3://mlflow/1/models/m-b/artifacts" } });
        const live = await kube.live("wine-target");
        assert.equal(live.spec.predictor.minReplicas, 2, "fields the controller does not own are untouched");
        assert.equal(live.spec.predictor.model.runtime, "mlserver");
        assert.equal(live.spec.predictor.model.storageUri, "s3://mlflow/1/models/m-b/artifacts");
        const applied = live.metadata.managedFields.find((m: any) => m.manager === "mlflow-deploy-controller" && m.operation === "Apply");
        assert.deepEqual(
            applied?.fieldsV1,
            { "f:metadata": { "f:annotations": { "f:mlflow-platform/model-version": {} } }, "f:spec": { "f:predictor": { "f:model": { "f:storageUri": {} } } } },
            "the API server records the controller's apply as owning exactly its two fields",
        );

        // A create racing another creator: the API server's own 409, surfaced with its status.
        await assert.rejects(t.create(apply("1", "s3://b/x")), (e: any) => e.status === 409 && /already exists/.test(e.message));
        // A model outside the Role: the API server's 403.
        const outside = new InferenceServiceTargetImpl({ kind: "InferenceService", namespace: NS, name: "not-followed" }, kc, 2000);
        await assert.rejects(outside.observe(), (e: any) => e.status === 403 && e.stage === "kubernetes" && /cannot get resource "inferenceservices"/.test(e.message));
        // An error answer keeps its status.
        const remove = kube.proxy.fail((r) => (r.method === "GET" && r.path === kube.isvcPath("wine-target") ? 503 : undefined));
        try {
            await assert.rejects(t.observe(), (e: any) => e.status === 503 && e.stage === "kubernetes");
        } finally {
            remove();
        }
        await eventually(() => received("wine-target").length === 3, 5000, "the refused create in the audit log");
        assert.deepEqual(received("wine-target").map((w) => [w.verb, w.code]), [["create", 201], ["patch", 200], ["create", 409]]);
    });

    it("runs as a plain local process with a Command target (the standalone example in controller/README.md)", async () => {
        const stateFile = path.join(dir, "local", "wine.json");
        const hookLog = path.join(dir, "local", "applied.log");
        mkdirSync(path.dirname(hookLog), { recursive: true });
        await mlflow.setAlias("wine", "champion", v1.version);
        const c = await startController("unused", {
            pollIntervalSeconds: 1,
            models: [
                {
                    key: "wine-local",
                    registeredModel: "wine",
                    alias: "champion",
                    target: { kind: "Command", stateFile, command: ["/bin/sh", "-c", `echo "$MODEL_VERSION $STORAGE_URI" >> ${hookLog}`], timeoutMs: 10000 },
                },
            ],
        });
        await eventually(() => existsSync(stateFile) && JSON.parse(readFileSync(stateFile, "utf8")).version === v1.version, 10000, "the first apply");
        await mlflow.setAlias("wine", "champion", v2.version);
        await eventually(() => JSON.parse(readFileSync(stateFile, "utf8")).version === v2.version, 10000, "the second apply");
        const passes = (await c.metrics()).get('mlflow_deploy_controller_reconciles_total{model="wine-local",result="success"}')!;
        await eventually(async () => (await c.metrics()).get('mlflow_deploy_controller_reconciles_total{model="wine-local",result="success"}')! >= passes + 2, 10000, "two more passes");
        assert.deepEqual(readFileSync(hookLog, "utf8").trim().split("\n"), [`${v1.version} ${v1Uri()}`, `${v2.version} ${v2Uri()}`], "the command ran once per change");
        assert.deepEqual(await c.stop("SIGTERM"), { code: 0, signal: null });
    });
});
