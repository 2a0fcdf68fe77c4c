// The Grafana dashboard (components/monitoring/dashboard.ts): a pure function, stable uids, the panels an operator needs.
import assert from "assert/strict";
import { AlertScope, selectorsFor } from "../../../components/monitoring/alerts";
import { dashboardUid, platformDashboard } from "../../../components/monitoring/dashboard";
import { find, installMocks, only, out, resetRegistry, T } from "../../harness";
import { build, FIXTURE_SCOPE, metricNames } from "./fixture";

describe("Monitoring: the Grafana dashboard", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    describe("Grafana dashboard", () => {
        it("is a ConfigMap labelled for the sidecar, holding the pure function's JSON", async () => {
            const m = await build("mon-dash");
            const cm = only(T.ConfigMap, "mon-dash-dashboard").inputs;
            assert.equal(cm.metadata.labels.grafana_dashboard, "1");
            assert.equal(cm.metadata.namespace, "ml");
            assert.deepEqual(Object.keys(cm.data), ["mlflow-ml.json"], "one file per platform namespace in the sidecar's folder");
            const json = JSON.parse(cm.data["mlflow-ml.json"]);
            const scope: AlertScope = {
                namespace: "ml",
                trackingJob: "mlflow-tracking",
                trackingPodSelector: "app.kubernetes.io/name=tracking,app.kubernetes.io/instance=mlflow",
                modelServerJob: "ml/mon-dash-model-servers",
                postgresStatefulSet: "mlflow-postgres",
                volumeStatefulSets: ["mlflow-postgres", "mlflow-minio"],
                backups: [],
            };
            assert.deepEqual(json, platformDashboard({ uid: "mlflow-ml", title: "MLflow platform (ml)", selectors: selectorsFor(scope) }));
            assert.equal(await out(m.dashboardUid), "mlflow-ml");
            assert.equal(json.uid, "mlflow-ml");
            assert.equal(json.title, "MLflow platform (ml)");
        });

        it("has the panels an operator needs, laid out on Grafana's 24-column grid", () => {
            const d = platformDashboard({ uid: "mlflow-ml", title: "t", selectors: selectorsFor(FIXTURE_SCOPE) }) as any;
            const again = platformDashboard({ uid: "mlflow-ml", title: "t", selectors: selectorsFor(FIXTURE_SCOPE) });
            assert.equal(JSON.stringify(d), JSON.stringify(again), "pure and deterministic");
            assert.equal(d.schemaVersion, 39);
            assert.equal(d.templating.list[0].type, "datasource");
            const ids = d.panels.map((p: any) => p.id);
            assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
            for (const p of d.panels) {
                assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24 && p.gridPos.h > 0, `${p.title}: gridPos`);
                if (p.type === "row") continue;
                assert.deepEqual(p.datasource, { type: "prometheus", uid: "${datasource}" });
                assert.ok(p.targets.length > 0 && p.fieldConfig.defaults.unit, p.title);
                for (const t of p.targets) assert.ok(metricNames(t.expr).length > 0, `${p.title}: ${t.expr}`);
            }
            const byTitle = (re: RegExp) => d.panels.find((p: any) => re.test(p.title));
            assert.match(byTitle(/^Request rate/).targets[0].expr, /^sum by \(status\) \(rate\(mlflow_http_request_total\{namespace="mlflow",job="mlflow-tracking"\}\[5m\]\)\)$/);
            assert.match(byTitle(/error ratio/).targets[0].expr, /status=~"5\.\."/);
            assert.deepEqual(byTitle(/^Latency/).targets.map((t: any) => /histogram_quantile\(([\d.]+),/.exec(t.expr)![1]), ["0.5", "0.95", "0.99"]);
            assert.match(byTitle(/^Writes/).targets[0].expr, /method=~"POST\|PATCH\|DELETE"/);
            assert.match(byTitle(/^Inference throughput/).targets[0].expr, /model_infer_request_success_total\{job="mlflow\/mlflow-model-servers"\}/);
            assert.match(byTitle(/^Inference latency/).targets[2].expr, /histogram_quantile\(0\.99,.*rest_server_request_duration_seconds_bucket\{job="mlflow\/mlflow-model-servers",path=~"\/v2\/models\/\.\+\/infer"\}/);
            assert.ok(byTitle(/PostgreSQL/) && byTitle(/Volume free/));
            // Without model servers, PostgreSQL or volumes, their panels go away.
            const bare = platformDashboard({ uid: "u", title: "t", selectors: selectorsFor({ ...FIXTURE_SCOPE, modelServerJob: undefined, postgresStatefulSet: undefined, volumeStatefulSets: [] }) }) as any;
            assert.ok(!bare.panels.some((p: any) => /Inference|PostgreSQL|Volume|Storage|Model/.test(p.title)));
        });

        it("keeps uids stable, unique per namespace and within 40 characters", () => {
            assert.equal(dashboardUid("mlflow-prod"), "mlflow-mlflow-prod");
            const long = "a-very-long-namespace-name-for-the-platform-in-prod";
            assert.equal(dashboardUid(long), "mlflow-a-very-long-namespace-na-20c8b087");
            assert.ok(dashboardUid(long).length <= 40);
            assert.notEqual(dashboardUid(long), dashboardUid(`${long}2`));
            assert.throws(() => platformDashboard({ uid: "bad uid!", title: "t", selectors: selectorsFor(FIXTURE_SCOPE) }), /uid/);
        });

        it("follows a custom sidecar label, or is left out", async () => {
            await build("mon-dash2", { config: { dashboard: { label: "grafana.io/dashboard", labelValue: "mlflow" } } });
            assert.equal(only(T.ConfigMap, "mon-dash2-dashboard").inputs.metadata.labels["grafana.io/dashboard"], "mlflow");
            const m = await build("mon-nodash", { config: { dashboard: { enabled: false } } });
            assert.equal(m.dashboard, undefined);
            assert.equal(find(T.ConfigMap, "mon-nodash-dashboard").length, 0);
        });
    });
});
