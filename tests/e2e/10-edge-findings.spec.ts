// (10) What probes of every path found, each proven against the running platform: the tracking
// server's Host allow-list admits only the names and addresses it means; cross-origin requests come
// only from the edge's origin; the server never hands out direct object-store transfers; no client of
// the edge can make the server call an address of its choosing, nor touch the platform's webhook.
import assert from "assert/strict";
import * as http from "http";
import type { LocalPlatform } from "../../scripts/local/platform";
import { api, basicAuth, platformUp } from "./fixture";

/** One request with exactly the given headers (fetch cannot set Host). */
function raw(port: number, pathAndQuery: string, headers: Record<string, string>, method = "GET", body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path: pathAndQuery, method, headers, timeout: 30_000 }, (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (c) => (text += c));
            res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, text }));
        });
        req.on("timeout", () => req.destroy(new Error(`${method} ${pathAndQuery}: timed out`)));
        req.on("error", reject);
        req.end(body);
    });
}

describe("e2e (10): the probes' findings", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;
    let tracking: number;

    before(async () => {
        p = await platformUp();
        tracking = p.servicePort("mlflow-tracking", 5000);
    });

    describe("the tracking server's Host allow-list", () => {
        const search = "/api/2.0/mlflow/experiments/search?max_results=1";
        it("refuses DNS names that merely start like a private IP or loopback, and other names", async () => {
            for (const host of ["10.evil.example", "192.168.attacker.example", "172.16.evil.example", "172.31.0.1.nip.io", "localhost:evil", "127.0.0.1:1", "127.0.0.1.evil.example", "evil.example", "mlflow-tracking.evil.example"]) {
                const r = await raw(tracking, search, { host });
                assert.equal(r.status, 403, `Host: ${host} got ${r.status}`);
                assert.match(r.text, /Invalid Host header/);
            }
        });

        it("admits the public host, the Service's names, and loopback, on the port clients reach (locally the Service's port is moved, and its entries with it)", async () => {
            for (const host of ["mlflow.dev.local", "mlflow-tracking", "mlflow-tracking.mlflow-dev.svc", `mlflow-tracking.mlflow-dev.svc.cluster.local:${tracking}`, `127.0.0.1:${tracking}`, `localhost:${tracking}`]) {
                const r = await raw(tracking, search, { host });
                assert.equal(r.status, 200, `Host: ${host} got ${r.status}: ${r.text.slice(0, 200)}`);
            }
        });

        it("still answers the kubelet's probes, whose Host is the pod IP on the container port", async () => {
            for (const path of ["/health", "/version"]) {
                const r = await raw(tracking, path, { host: "10.244.3.17:5000" });
                assert.equal(r.status, 200, `${path}: ${r.status}`);
            }
        });
    });

    describe("cross-origin requests through the edge", () => {
        const search = "/api/2.0/mlflow/experiments/search?max_results=1";
        for (const origin of ["https://evil.example", "http://localhost:3000", "http://127.0.0.1:8888", "http://[::1]:9999", "null"]) {
            it(`refuses a credentialed read and a simple write from ${origin}, with no allow-origin`, async () => {
                const read = await api(p, search, { headers: { ...basicAuth(p.login.user, p.login.password), origin } });
                assert.equal(read.status, 403, read.text.slice(0, 200));
                const res = await fetch(`${p.uiUrl}/api/2.0/mlflow/experiments/create`, {
                    method: "POST",
                    // A form-like body: a browser sends it cross-origin without a preflight.
                    headers: { ...basicAuth(p.login.user, p.login.password), origin, "content-type": "text/plain" },
                    body: JSON.stringify({ name: `cors-${origin.replace(/\W/g, "")}` }),
                });
                assert.equal(res.status, 403);
                assert.equal(res.headers.get("access-control-allow-origin"), null);
                const created = await api(p, `/api/2.0/mlflow/experiments/get-by-name?experiment_name=cors-${origin.replace(/\W/g, "")}`);
                assert.equal(created.status, 404, "the write must not have happened");
            });
        }

        it("admits the edge's own origin, with credentials", async () => {
            const origin = new URL(p.uiUrl).origin;
            const res = await fetch(`${p.uiUrl}${search}`, { headers: { ...basicAuth(p.login.user, p.login.password), origin } });
            assert.equal(res.status, 200);
            assert.equal(res.headers.get("access-control-allow-origin"), origin);
            assert.equal(res.headers.get("access-control-allow-credentials"), "true");
        });
    });

    describe("artifacts move through the edge, never straight to the object store", () => {
        it("server-info reports multipart transfers (presigned URLs to the object store) off, and the AI gateway off", async () => {
            for (const path of ["/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info"]) {
                const r = await api(p, path);
                assert.equal(r.status, 200, r.text);
                assert.equal(r.json.store_type, "SqlStore");
                assert.equal(r.json.multipart_uploads_enabled, false, path);
                assert.equal(r.json.multipart_downloads_enabled, false, path);
                assert.equal(r.json.features_enabled.gateway, false, path);
            }
        });

        it("refuses every endpoint that hands out a presigned URL or a multipart upload, however the path is spelt", async () => {
            const calls: [string, string, unknown?][] = [
                ["POST", "/api/2.0/mlflow-artifacts/mpu/create/0/x.bin", { path: "x.bin", num_parts: 1 }],
                ["POST", "/api/2.0/mlflow-artifacts/mpu/complete/0/x.bin", { path: "x.bin", upload_id: "u", parts: [] }],
                ["POST", "/ajax-api/2.0/mlflow-artifacts/mpu/abort/0/x.bin", { path: "x.bin", upload_id: "u" }],
                ["GET", "/api/2.0/mlflow-artifacts/presigned/0/x.bin"],
                ["GET", "//api/2.0/mlflow-artifacts/presigned/0/x.bin"],
                ["GET", "/api/2.0/mlflow-artifacts/%70resigned/0/x.bin"],
                ["POST", "/api/2.0/mlflow/artifacts/presigned-download-url", { run_id: "r", path: "x" }],
                ["POST", "/ajax-api/2.0/mlflow/artifacts/presigned-upload-url", { run_id: "r", path: "x" }],
            ];
            for (const [method, path, body] of calls) {
                const r = await api(p, path, { method, body });
                assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${r.text.slice(0, 200)}`);
                assert.doesNotMatch(r.text, /X-Amz-Signature|X-Amz-Credential/i, `${method} ${path} leaked a presigned URL`);
            }
        });
    });

    describe("webhooks through the edge", () => {
        let listener: http.Server;
        let heard = 0;
        const ANSWER = `internal-answer-${Date.now()}`;
        before(async () => {
            // An internal service the server can reach and an outside client cannot.
            listener = http.createServer((_req, res) => {
                heard++;
                res.end(ANSWER);
            });
            await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
        });
        after(() => new Promise<void>((resolve) => listener.close(() => resolve())));

        const direct = (path: string, method = "GET", body?: unknown) =>
            raw(tracking, path, { host: `127.0.0.1:${tracking}`, "content-type": "application/json" }, method, body === undefined ? undefined : JSON.stringify(body));

        it("refuses creating, listing and testing a webhook aimed at an internal listener; the listener hears nothing and no answer comes back", async () => {
            const url = `http://127.0.0.1:${(listener.address() as any).port}/hook`;
            const events = [{ entity: "MODEL_VERSION", action: "CREATED" }];
            const created = await api(p, "/api/2.0/mlflow/webhooks", { body: { name: "probe", url, events } });
            assert.equal(created.status, 403, created.text.slice(0, 200));
            const ajax = await api(p, "/ajax-api/2.0/mlflow/webhooks", { body: { name: "probe", url, events } });
            assert.equal(ajax.status, 403);
            // Had one been made in the cluster, testing it through the edge is refused too.
            const inCluster = await direct("/api/2.0/mlflow/webhooks", "POST", { name: "probe-in-cluster", url, events });
            assert.equal(inCluster.status, 200, inCluster.text);
            const id = JSON.parse(inCluster.text).webhook.webhook_id;
            try {
                const tested = await api(p, `/api/2.0/mlflow/webhooks/${id}/test`, { body: {} });
                assert.equal(tested.status, 403);
                assert.doesNotMatch(tested.text, new RegExp(ANSWER));
                assert.equal((await api(p, "/api/2.0/mlflow/webhooks")).status, 403);
                assert.equal(heard, 0, "the server called the internal listener");
            } finally {
                assert.equal((await direct(`/api/2.0/mlflow/webhooks/${id}`, "DELETE")).status, 200);
            }
        });

        it("leaves the deploy controller's webhook out of reach: editing, disabling and deleting it through the edge are refused", async () => {
            const before = JSON.parse((await direct("/api/2.0/mlflow/webhooks")).text).webhooks ?? [];
            const ours = before.find((w: any) => /deploy-controller/.test(w.name));
            assert.ok(ours, `the controller registers a webhook: ${JSON.stringify(before)}`);
            for (const [method, body] of [["PATCH", { url: "http://127.0.0.1:1/elsewhere" }], ["PATCH", { status: "DISABLED" }], ["DELETE", undefined]] as const) {
                const r = await api(p, `/api/2.0/mlflow/webhooks/${ours.webhook_id}`, { method, body });
                assert.equal(r.status, 403, `${method}: ${r.text.slice(0, 200)}`);
            }
            const after = JSON.parse((await direct(`/api/2.0/mlflow/webhooks/${ours.webhook_id}`)).text).webhook;
            assert.deepEqual({ url: after.url, status: after.status }, { url: ours.url, status: ours.status });
        });
    });
});
