// (10) What probes of every path found, each proven against the running platform: the tracking
// server's Host allow-list admits only the names and addresses it means.
import assert from "assert/strict";
import * as http from "http";
import type { LocalPlatform } from "../../scripts/local/platform";
import { platformUp } from "./fixture";

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
});
