// (4) Monitoring: Prometheus, configured from the rendered ServiceMonitors, PodMonitor and PrometheusRule,
// scrapes the tracking server (target up, MLflow request metrics present), the deploy controller and the model server, and has
// loaded the platform's alert rules.
import assert from "assert/strict";
import type { LocalPlatform } from "../../scripts/local/platform";
import { sleep } from "../../scripts/local/supervisor";
import { api, listenAddresses, LOOPBACK, platformUp, wineExample } from "./fixture";

async function promQuery(p: LocalPlatform, path: string): Promise<any> {
    const res = await fetch(`${p.prometheusUrl}${path}`);
    assert.equal(res.status, 200);
    return ((await res.json()) as any).data;
}

/** The active target of a scrape job, asserted up. */
async function upTarget(p: LocalPlatform, job: string): Promise<any> {
    const targets = await promQuery(p, "/api/v1/targets?state=active");
    const t = targets.activeTargets.find((x: any) => x.labels.job === job);
    assert.ok(t, `no target with job ${job}`);
    assert.equal(t.health, "up", t.lastError);
    return t;
}

/** Polls until `check` passes; a scrape interval of the dev stack is 30 s. */
async function eventually(what: string, check: () => Promise<void>, timeoutMs = 150_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        try {
            return await check();
        } catch (e) {
            if (Date.now() > deadline) throw new Error(`${what}: ${(e as Error).message}`);
            await sleep(2000);
        }
    }
}

describe("e2e (4): Prometheus scrapes what the monitors select", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;

    before(async () => {
        p = await platformUp();
        await wineExample(p);
        for (let i = 0; i < 5; i++) await api(p, "/api/2.0/mlflow/experiments/search?max_results=5");
    });

    it("has the MLflow target up under the ServiceMonitor's job, and MLflow request metrics", async () => {
        await eventually("tracking target up", async () => {
            const t = await upTarget(p, "mlflow-tracking");
            assert.equal(t.labels.namespace, p.stack.namespace);
            assert.equal(t.scrapeUrl, `http://127.0.0.1:${p.servicePort("mlflow-tracking", 5000)}/metrics`);
        });
        await eventually("mlflow_http_request_total", async () => {
            const r = await promQuery(p, `/api/v1/query?query=${encodeURIComponent('sum(mlflow_http_request_total{job="mlflow-tracking",status="200"})')}`);
            assert.ok(r.result.length === 1 && Number(r.result[0].value[1]) > 0, JSON.stringify(r.result));
            const h = await promQuery(p, `/api/v1/query?query=${encodeURIComponent('count(mlflow_http_request_duration_seconds_bucket{job="mlflow-tracking"})')}`);
            assert.ok(h.result.length === 1 && Number(h.result[0].value[1]) > 0, "no latency histogram");
        });
    });

    it("scrapes the deploy controller its ServiceMonitor selects, with its reconcile metrics", async () => {
        await eventually("controller target up", async () => {
            const t = await upTarget(p, "mlflow-deploy-controller");
            assert.equal(t.scrapeUrl, `http://127.0.0.1:${p.servicePort("mlflow-deploy-controller", 9090)}/metrics`);
            const r = await promQuery(p, `/api/v1/query?query=${encodeURIComponent('sum(mlflow_deploy_controller_reconciles_total{job="mlflow-deploy-controller",model="wine-quality"})')}`);
            assert.ok(r.result.length === 1 && Number(r.result[0].value[1]) > 0, JSON.stringify(r.result));
        });
    });

    it("has loaded the PrometheusRule groups (promtool-checked), and MlflowTrackingDown is not firing", async () => {
        const rules = await promQuery(p, "/api/v1/rules");
        const alerts = rules.groups.flatMap((g: any) => g.rules.map((r: any) => r.name));
        for (const a of ["MlflowTrackingDown", "MlflowTrackingHighErrorRatio", "ModelServerTargetDown"]) assert.ok(alerts.includes(a), `${a} missing`);
        const down = rules.groups.flatMap((g: any) => g.rules).find((r: any) => r.name === "MlflowTrackingDown");
        assert.notEqual(down.state, "firing");
    });

    it("scrapes the model server the PodMonitor selects, with the InferenceService label", async () => {
        await p.serving!.waitForModel("wine-quality", 600_000);
        await eventually("model server target up", async () => {
            const targets = await promQuery(p, "/api/v1/targets?state=active");
            const t = targets.activeTargets.find((x: any) => x.labels.job === `${p.stack.namespace}/mlflow-model-servers`);
            assert.ok(t, "no model server target");
            assert.equal(t.health, "up", t.lastError);
            assert.equal(t.labels.serving_kserve_io_inferenceservice, "wine-quality");
        });
    });

    it("binds every server of the platform to 127.0.0.1 only", () => {
        const ports = { ingress: p.ports.ingress, prometheus: p.ports.prometheus, ...Object.fromEntries(p.services.flatMap((s) => s.ports.map((x) => [`${s.name}:${x.port}`, x.localPort]))) };
        for (const [name, port] of Object.entries(ports)) {
            const addresses = listenAddresses(port);
            assert.ok(addresses.includes("127.0.0.1") && addresses.every((a) => LOOPBACK.has(a)), `${name} (${port}): ${addresses}`);
        }
    });
});
