// The controller's adapters and listeners, in process and fast: the Kubernetes targets' pure parts and
// their failures without an API server (against the real kube-apiserver: tests/service/
// controller.mlflow.spec.ts), the local Command target, the registry client against MLflow's recorded
// answers, and run() with its HTTP endpoints and a pluggable target.
import assert from "assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as http from "http";
import type { AddressInfo } from "net";
import { tmpdir } from "os";
import * as path from "path";
import { parseConfig } from "../../controller/config";
import { run, RunningController } from "../../controller/index";
import { createLogger } from "../../controller/log";
import { RegistryClient } from "../../controller/registry";
import { CommandServingTarget } from "../../controller/targets/command";
import { inferenceServiceForCreate, InferenceServiceTargetImpl, kubeConfig, observeInferenceService } from "../../controller/targets/kube";
import type { Apply, ServingTarget } from "../../controller/targets/types";
import { signDelivery } from "../../controller/webhook";

import { FIXTURES } from "../harness";
const SERVING = path.join(FIXTURES, "serving");
const fixture = (f: string) => readFileSync(path.join(SERVING, f), "utf8");
const quiet = createLogger("error", () => undefined);
const apply = (version: string, artifact: string): Apply => ({ version, artifact, storageUri: artifact, source: "models:/m-x", registeredModel: "wine-quality", alias: "champion" });

let dir: string;
describe("controller adapters", () => {
    before(() => {
        dir = mkdtempSync(path.join(tmpdir(), "controller-targets-"));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    describe("controller: Kubernetes targets (no API server needed)", () => {
        it("InferenceService: the default object to create is an MLflow v2 predictor in Standard mode", () => {
            const body = inferenceServiceForCreate({ kind: "InferenceService", namespace: "ml", name: "wine" }, apply("3", "s3://b/m"));
            assert.equal(body.metadata.annotations["serving.kserve.io/deploymentMode"], "Standard");
            assert.deepEqual(body.spec.predictor.model, { modelFormat: { name: "mlflow" }, protocolVersion: "v2", storageUri: "s3://b/m" });
            assert.equal(body.metadata.labels["app.kubernetes.io/managed-by"], "mlflow-deploy-controller");
        });

        it("InferenceService in image mode is reported incompatible", () => {
            const o = observeInferenceService({ metadata: {}, spec: { predictor: { containers: [{ name: "kserve-container", image: "r/m:1" }] } } });
            assert.ok(o.exists && o.incompatible);
        });

        it("unreachable API servers and timeouts fail without a status", async () => {
            const down = kubeConfig({ server: "http://127.0.0.1:9", insecureSkipTlsVerify: true, timeoutMs: 500 });
            await assert.rejects(new InferenceServiceTargetImpl({ kind: "InferenceService", namespace: "ml", name: "wine" }, down, 500).observe(), (e: any) => e.status === undefined);
            const hang = http.createServer(() => undefined);
            await new Promise<void>((r) => hang.listen(0, "127.0.0.1", r));
            const slow = kubeConfig({ server: `http://127.0.0.1:${(hang.address() as AddressInfo).port}`, insecureSkipTlsVerify: true, timeoutMs: 200 });
            await assert.rejects(new InferenceServiceTargetImpl({ kind: "InferenceService", namespace: "ml", name: "wine" }, slow, 200).observe(), /no answer within 200 ms/);
            hang.closeAllConnections();
            hang.close();
        });
    });

    describe("controller: Command target (local serving)", () => {
        it("records the served state after the command succeeds, with MODEL_* env", async () => {
            const stateFile = path.join(dir, "state", "wine.json");
            const envFile = path.join(dir, "env.txt");
            const t = new CommandServingTarget(
                { kind: "Command", stateFile, command: ["/bin/sh", "-c", `echo "$MODEL_NAME $MODEL_VERSION $STORAGE_URI" > ${envFile}`], timeoutMs: 5000 },
                quiet,
            );
            assert.deepEqual(await t.observe(), { exists: false });
            await t.create(apply("4", "s3://mlflow/1/models/m-d/artifacts"));
            assert.equal(readFileSync(envFile, "utf8").trim(), "wine-quality 4 s3://mlflow/1/models/m-d/artifacts");
            assert.deepEqual(await t.observe(), { exists: true, artifact: "s3://mlflow/1/models/m-d/artifacts", version: "4" });
        });

        it("keeps the old state when the command fails, and reports its output", async () => {
            const stateFile = path.join(dir, "state", "fail.json");
            writeFileSync(stateFile, JSON.stringify({ version: "1", artifact: "s3://b/1" }));
            const t = new CommandServingTarget({ kind: "Command", stateFile, command: ["/bin/sh", "-c", "echo model download failed >&2; exit 3"], timeoutMs: 5000 }, quiet);
            await assert.rejects(t.patch(apply("2", "s3://b/2")), /exited 3: model download failed/);
            assert.deepEqual(await t.observe(), { exists: true, artifact: "s3://b/1", version: "1" });
        });
    });

    /** MLflow's answers for one alias (recorded from 3.17.2), plus the webhook endpoints, with counters. */
    function fakeMlflow() {
        const calls: string[] = [];
        const webhooks: any[] = [];
        let aliasAnswer: [number, string] = [200, fixture("alias-models-source.json")];
        const server = http.createServer((req, res) => {
            const url = new URL(req.url ?? "/", "http://x");
            let body = "";
            req.on("data", (c) => (body += c));
            req.on("end", () => {
                calls.push(`${req.method} ${url.pathname}`);
                const send = (code: number, text: string) => {
                    res.writeHead(code, { "content-type": "application/json" });
                    res.end(text);
                };
                if (url.pathname === "/api/2.0/mlflow/registered-models/alias") return send(...aliasAnswer);
                if (url.pathname.startsWith("/api/2.0/mlflow/logged-models/")) return send(200, fixture("logged-model.json"));
                if (url.pathname === "/api/2.0/mlflow/webhooks" && req.method === "GET") return send(200, JSON.stringify({ webhooks }));
                if (url.pathname === "/api/2.0/mlflow/webhooks" && req.method === "POST") {
                    const w = { ...JSON.parse(body), webhook_id: `wh-${webhooks.length + 1}` };
                    webhooks.push(w);
                    return send(200, JSON.stringify({ webhook: w }));
                }
                const m = /^\/api\/2\.0\/mlflow\/webhooks\/([^/]+)$/.exec(url.pathname);
                if (m && req.method === "PATCH") {
                    const w = webhooks.find((x) => x.webhook_id === m[1]);
                    Object.assign(w, JSON.parse(body));
                    return send(200, JSON.stringify({ webhook: w }));
                }
                send(404, '{"error_code":"ENDPOINT_NOT_FOUND"}');
            });
        });
        return {
            server,
            calls,
            webhooks,
            setAlias: (code: number, text: string) => {
                aliasAnswer = [code, text];
            },
            async start() {
                await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
                return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
            },
        };
    }

    describe("controller: registry client (MLflow 3.17.2 answers)", () => {
        const mlflow = fakeMlflow();
        let url: string;
        before(async () => {
            url = await mlflow.start();
        });
        after(() => mlflow.server.close());

        it("resolves models:/m-… through the logged model, once per logged model", async () => {
            const c = new RegistryClient({ trackingUri: url, timeoutMs: 2000, artifactsDestination: "s3://mlflow" });
            const expected = { kind: "serve", version: "1", storageUri: "s3://mlflow/1/models/m-3cc3b12d25014619af91bd03b49410c0/artifacts", source: "models:/m-3cc3b12d25014619af91bd03b49410c0" };
            assert.deepEqual(await c.resolve("wine-quality", "champion"), expected);
            assert.deepEqual(await c.resolve("wine-quality", "champion"), expected);
            assert.equal(mlflow.calls.filter((x) => x.includes("logged-models")).length, 1);
        });

        it("answers absent for MLflow's missing-alias and missing-model errors, and throws for others", async () => {
            const c = new RegistryClient({ trackingUri: url, timeoutMs: 2000, artifactsDestination: "s3://mlflow" });
            mlflow.setAlias(400, fixture("error-alias-not-found.json"));
            assert.equal((await c.resolve("wine-quality", "nope")).kind, "absent");
            mlflow.setAlias(404, fixture("error-model-not-found.json"));
            assert.equal((await c.resolve("nope", "champion")).kind, "absent");
            mlflow.setAlias(503, '{"error_code":"TEMPORARILY_UNAVAILABLE","message":"db down"}');
            await assert.rejects(c.resolve("wine-quality", "champion"), /answered 503/);
            mlflow.setAlias(200, JSON.stringify({ model_version: { version: "5", source: "file:///tmp/model", status: "READY" } }));
            assert.deepEqual(await c.resolve("wine-quality", "champion"), { kind: "unservable", version: "5", reason: 'model version 5 of wine-quality: "file:///tmp/model" cannot be served: only s3:// and mlflow-artifacts:/ locations map to an s3:// storageUri' });
            mlflow.setAlias(200, JSON.stringify({ model_version: { version: "6", source: "models:/m-x", status: "PENDING_REGISTRATION" } }));
            assert.equal((await c.resolve("wine-quality", "champion")).kind, "unservable");
            mlflow.setAlias(200, fixture("alias-models-source.json"));
        });

        it("registers the webhook once and updates it (secret included) on later starts", async () => {
            const c = new RegistryClient({ trackingUri: url, timeoutMs: 2000, artifactsDestination: "s3://mlflow" });
            assert.deepEqual(await c.ensureWebhook({ name: "ctl", url: "http://ctl:8080/webhooks/mlflow", secret: "a" }), { id: "wh-1", created: true });
            assert.deepEqual(await c.ensureWebhook({ name: "ctl", url: "http://ctl:8080/webhooks/mlflow", secret: "b" }), { id: "wh-1", created: false });
            assert.equal(mlflow.webhooks.length, 1);
            assert.equal(mlflow.webhooks[0].secret, "b");
            assert.deepEqual(mlflow.webhooks[0].events, [
                { entity: "MODEL_VERSION_ALIAS", action: "CREATED" },
                { entity: "MODEL_VERSION_ALIAS", action: "DELETED" },
            ]);
        });
    });

    describe("controller: run() with a pluggable target, HTTP endpoints", () => {
        const mlflow = fakeMlflow();
        let handle: RunningController;
        const applied: Apply[] = [];
        const secretFile = () => path.join(dir, "hook-secret");

        before(async () => {
            const url = await mlflow.start();
            writeFileSync(secretFile(), "hook-secret\n");
            const target: ServingTarget = {
                description: "in-process",
                canCreate: true,
                artifactFor: (_v, uri) => uri,
                observe: async () => (applied.length ? { exists: true, version: applied.at(-1)!.version, artifact: applied.at(-1)!.artifact } : { exists: false }),
                create: async (a) => void applied.push(a),
                patch: async (a) => void applied.push(a),
            };
            const config = parseConfig({
                mlflow: { trackingUri: url, artifactsDestination: "s3://mlflow", timeoutMs: 1000 },
                pollIntervalSeconds: 3600,
                http: { host: "127.0.0.1", webhookPort: 0, metricsPort: 0 },
                webhook: { secretFile: secretFile() },
                models: [{ registeredModel: "wine-quality", target: { kind: "Command", stateFile: "/unused" } }],
            });
            handle = await run({ config, log: quiet, targetFactory: () => target });
        });
        after(async () => {
            await handle?.stop();
            mlflow.server.close();
        });

        const get = async (port: number, p: string, init?: RequestInit) => {
            const r = await fetch(`http://127.0.0.1:${port}${p}`, init);
            return { status: r.status, text: await r.text(), type: r.headers.get("content-type") };
        };

        it("serves /healthz, /readyz and Prometheus /metrics on the metrics port", async () => {
            for (let i = 0; i < 50 && (await get(handle.metricsPort, "/readyz")).status !== 200; i++) await new Promise((r) => setTimeout(r, 20));
            assert.equal((await get(handle.metricsPort, "/healthz")).status, 200);
            assert.equal((await get(handle.metricsPort, "/readyz")).status, 200);
            const m = await get(handle.metricsPort, "/metrics");
            assert.match(m.type!, /^text\/plain; version=0\.0\.4/);
            for (const name of ["reconciles_total", "patches_total", "errors_total", "seconds_since_last_successful_sync", "webhook_deliveries_total"]) {
                assert.match(m.text, new RegExp(`^# TYPE mlflow_deploy_controller_${name} `, "m"));
            }
            assert.match(m.text, /mlflow_deploy_controller_patches_total\{model="wine-quality",operation="create"\} 1/);
            assert.equal(applied.length, 1);
            assert.equal((await get(handle.metricsPort, "/nope")).status, 404);
        });

        it("accepts a signed webhook for a followed alias (secret file with trailing newline) and refuses the rest", async () => {
            const port = handle.webhookPort!;
            const body = JSON.stringify({ entity: "model_version_alias", action: "created", data: { name: "wine-quality", alias: "champion", version: "1" } });
            const ts = String(Math.floor(Date.now() / 1000));
            const signed = (id: string, b = body) => ({ "x-mlflow-delivery-id": id, "x-mlflow-timestamp": ts, "x-mlflow-signature": signDelivery("hook-secret", id, ts, b) });
            assert.equal((await get(port, "/webhooks/mlflow", { method: "POST", headers: signed("d1"), body })).status, 202);
            assert.equal(JSON.parse((await get(port, "/webhooks/mlflow", { method: "POST", headers: signed("d1"), body })).text).status, "duplicate");
            const other = JSON.stringify({ entity: "model_version_alias", action: "created", data: { name: "other", alias: "champion", version: "1" } });
            assert.equal(JSON.parse((await get(port, "/webhooks/mlflow", { method: "POST", headers: signed("d2", other), body: other })).text).status, "ignored");
            assert.equal((await get(port, "/webhooks/mlflow", { method: "POST", headers: { ...signed("d3"), "x-mlflow-signature": "v1,AAAA" }, body })).status, 401);
            assert.equal((await get(port, "/webhooks/mlflow")).status, 405);
            assert.equal((await get(port, "/elsewhere", { method: "POST", body })).status, 404);
            assert.equal((await get(port, "/webhooks/mlflow", { method: "POST", headers: signed("d4"), body: "x".repeat(70 * 1024) })).status, 413);
            const m = (await get(handle.metricsPort, "/metrics")).text;
            assert.match(m, /webhook_deliveries_total\{result="accepted"\} 1/);
            assert.match(m, /webhook_deliveries_total\{result="duplicate"\} 1/);
            assert.match(m, /webhook_deliveries_total\{result="rejected"\} 1/);
        });

        it("stops gracefully and closes its listeners", async () => {
            const port = handle.metricsPort;
            const stopping = handle.stop();
            await stopping;
            await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
        });
    });

    describe("controller: webhook registration refused by MLflow", () => {
        it("keeps polling and asks again in 10 minutes, not at every backoff step", async () => {
            const refusing = http.createServer((req, res) => {
                const url = new URL(req.url ?? "/", "http://x");
                res.writeHead(url.pathname.endsWith("/webhooks") && req.method === "POST" ? 400 : url.pathname.endsWith("/webhooks") ? 200 : 400, { "content-type": "application/json" });
                res.end(
                    url.pathname.endsWith("/webhooks") && req.method === "GET"
                        ? '{"webhooks":[]}'
                        : url.pathname.endsWith("/webhooks")
                          ? '{"error_code":"INVALID_PARAMETER_VALUE","message":"Invalid webhook URL scheme: \'http\'"}'
                          : '{"error_code":"INVALID_PARAMETER_VALUE","message":"Registered model alias champion not found."}',
                );
            });
            await new Promise<void>((r) => refusing.listen(0, "127.0.0.1", r));
            const lines: any[] = [];
            writeFileSync(path.join(dir, "s2"), "x");
            const h = await run({
                config: parseConfig({
                    mlflow: { trackingUri: `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`, artifactsDestination: "s3://mlflow" },
                    http: { host: "127.0.0.1", webhookPort: 0, metricsPort: 0 },
                    webhook: { secretFile: path.join(dir, "s2"), register: { name: "ctl", url: "http://ctl:8080/webhooks/mlflow" } },
                    models: [{ registeredModel: "wine-quality", target: { kind: "Command", stateFile: path.join(dir, "s2.json") } }],
                }),
                log: createLogger("info", (l) => lines.push(JSON.parse(l))),
            });
            try {
                for (let i = 0; i < 100 && !lines.some((l) => /cannot register/.test(l.msg)); i++) await new Promise((r) => setTimeout(r, 10));
                const warn = lines.find((l) => /cannot register/.test(l.msg));
                assert.equal(warn.status, 400);
                assert.equal(warn.delayMs, 600000);
                assert.equal(h.metrics.webhookRegistered.get({}), 0);
            } finally {
                await h.stop();
                refusing.close();
            }
        });
    });
});
