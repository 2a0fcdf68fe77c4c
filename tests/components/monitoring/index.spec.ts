import assert from "assert/strict";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { Database } from "../../../components/database";
import { databaseSchema } from "../../../components/database/schema";
import { selectorLabels } from "../../../components/kube";
import { z } from "zod";
import { durationSeconds } from "../../../components/fields";
import { MODEL_SERVER_SELECTOR, Monitoring, MonitoringArgs } from "../../../components/monitoring";
import { alertRules, AlertScope, METRIC_SOURCES, RuleGroup, selectorsFor } from "../../../components/monitoring/alerts";
import { dashboardUid, platformDashboard } from "../../../components/monitoring/dashboard";
import { monitoringSchema } from "../../../components/monitoring/schema";
import { KUBE_PROMETHEUS_STACK_REPO, KUBE_PROMETHEUS_STACK_VERSION } from "../../../components/monitoring/stack";
import { servingRuntimeSpec } from "../../../components/modelServing/runtime";
import { TrackingServer } from "../../../components/trackingServer";
import { trackingSchema } from "../../../components/trackingServer/schema";
import { MLSERVER_PORTS, TRACKING_PORT } from "../../../shared/ports";
import { assertSelects, find, FIXTURES, installMocks, isSecretValue, only, out, resetRegistry, ROOT, settle, smallResources, T, unsecret } from "../../harness";

// CommonJS builds of the prometheus-operator CRD models (schema validation of what is sent to Kubernetes).
/* eslint-disable @typescript-eslint/no-require-imports */
const { ServiceMonitor } = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor");
const { PodMonitor } = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor");
const { PrometheusRule } = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule");
/* eslint-enable @typescript-eslint/no-require-imports */

const M = {
    ServiceMonitor: "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
    PodMonitor: "kubernetes:monitoring.coreos.com/v1:PodMonitor",
    PrometheusRule: "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
    Release: "kubernetes:helm.sh/v3:Release",
} as const;

const MONITORING = path.join(FIXTURES, "monitoring");

/** The scope tests/fixtures/monitoring/rules.test.yaml is written for. */
const FIXTURE_SCOPE: AlertScope = {
    namespace: "mlflow",
    trackingJob: "mlflow-tracking",
    trackingPodSelector: "app.kubernetes.io/name=tracking,app.kubernetes.io/instance=mlflow",
    modelServerJob: "mlflow/mlflow-model-servers",
    postgresStatefulSet: "mlflow-postgres",
    volumeStatefulSets: ["mlflow-postgres", "mlflow-minio"],
};

/** The platform's default alert thresholds. */
const THRESHOLDS = monitoringSchema.parse({}).thresholds;

type Overrides = Partial<Omit<MonitoringArgs, "config">> & { config?: z.input<typeof monitoringSchema> };

const fixture = ({ config, ...overrides }: Overrides = {}): MonitoringArgs => ({
    namespace: "ml",
    config: monitoringSchema.parse(config ?? {}),
    tracking: { serviceName: "mlflow-tracking", selectorLabels: selectorLabels("tracking", "mlflow") },
    postgresStatefulSet: "mlflow-postgres",
    volumeStatefulSets: ["mlflow-postgres", "mlflow-minio"],
    stackNamespace: "monitoring",
    ...overrides,
});

async function build(name: string, overrides: Overrides = {}) {
    const m = new Monitoring(name, fixture(overrides), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(...([m.serviceMonitor, m.podMonitor, m.prometheusRule, m.dashboard, m.stack].filter(Boolean) as pulumi.Resource[]));
    await out(m.ruleGroups);
    return m;
}

const ruleList = (groups: RuleGroup[]) => groups.flatMap((g) => g.rules);

/** Metric names in a PromQL expression: every selector in this project is written `name{…}`. */
function metricNames(expr: string): string[] {
    return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1]);
}

/** Label names a PromQL expression matches on (`{a="x",b=~"y"}`) or aggregates by (`by (a, b)`). */
function labelNames(expr: string): string[] {
    const matchers = [...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) => [...m[1].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)].map((x) => x[1]));
    const by = [...expr.matchAll(/\bby \(([^)]*)\)/g)].flatMap((m) => m[1].split(",").map((s) => s.trim()));
    return [...matchers, ...by];
}

/** metric name → label names, from a Prometheus text exposition captured from the real exporter. */
function exposition(file: string): Map<string, Set<string>> {
    const series = new Map<string, Set<string>>();
    for (const line of fs.readFileSync(path.join(MONITORING, file), "utf8").split("\n")) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+$/.exec(line);
        if (!m) continue;
        const labels = series.get(m[1]) ?? new Set<string>();
        for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1]);
        series.set(m[1], labels);
    }
    return series;
}

/** Labels prometheus-operator adds to every scraped series (target labels), plus our podTargetLabels. */
const TARGET_LABELS = new Set(["job", "namespace", "pod", "instance", "container", "endpoint", "service", "serving_kserve_io_inferenceservice"]);

describe("Monitoring", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    describe("what is sent to Kubernetes", () => {
        it("scrapes the tracking Service's `http` port at /metrics, without credentials, labelled for the Prometheus release", async () => {
            // The real TrackingServer, so selector labels and port name are checked against its actual Service.
            const ts = new TrackingServer(
                "mlflow",
                {
                    namespace: "ml",
                    config: trackingSchema.parse({ resources: smallResources, tmpSizeLimit: "256Mi" }),
                    publicHost: "mlflow.example.com",
                    database: { host: "db", port: 5432, databaseName: "mlflow", user: "mlflow", sslMode: "prefer", passwordSecretName: "db", clientEgress: { ports: [{ port: 5432 }] } },
                    artifacts: { endpoint: "http://minio:9000", bucket: "artifacts", region: "us-east-1", readWriteSecretName: "rw", clientEgress: { ports: [{ port: 9000 }] } },
                    // Prometheus's namespace must be a client, or the platform's default-deny policy drops the scrape.
                    clientNamespaces: ["monitoring"],
                },
                { providers: [new k8s.Provider("ts-k8s", {})] },
            );
            const m = new Monitoring("mon-sm", fixture({ tracking: { serviceName: ts.serviceName, selectorLabels: selectorLabels("tracking", "mlflow") }, config: { scrapeInterval: "15s" } }));
            await settle(ts.service, m.serviceMonitor);
            const svc = only(T.Service, "mlflow-svc").inputs;
            const sm = only(M.ServiceMonitor, "mon-sm-tracking").inputs;

            assertSelects(sm.spec.selector.matchLabels, svc.metadata.labels, "ServiceMonitor must select the tracking Service");
            assert.deepEqual(sm.spec.namespaceSelector, { matchNames: ["ml"] });
            assert.equal(sm.metadata.namespace, "ml");
            const [ep] = sm.spec.endpoints;
            assert.ok(svc.spec.ports.some((p: any) => p.name === ep.port), `port ${ep.port} must be a named port of the Service`);
            assert.equal(ep.port, "http");
            assert.equal(ep.path, "/metrics");
            assert.equal(ep.interval, "15s");
            assert.equal(ep.scrapeTimeout, "10s");
            for (const auth of ["basicAuth", "authorization", "bearerTokenSecret", "oauth2"]) assert.equal(ep[auth], undefined, `no ${auth}: /metrics is not behind auth`);
            assert.equal(sm.metadata.labels.release, "kube-prometheus-stack");
            assert.equal(sm.metadata.labels["app.kubernetes.io/part-of"], "mlflow-platform");

            // The tracking NetworkPolicy admits Prometheus's namespace on the scraped port.
            const netpol = only("kubernetes:networking.k8s.io/v1:NetworkPolicy", "mlflow-netpol").inputs;
            const rule = netpol.spec.ingress[0];
            assert.ok(rule.from.some((f: any) => f.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] === "monitoring"));
            assert.ok(rule.ports.some((p: any) => p.port === TRACKING_PORT), "the policy must open the port the `http` Service port targets");
            // The scrape's Host header is the pod IP; the tracking server must accept private IPs.
            const hosts: string[] = await out(ts.allowedHosts);
            assert.ok(hosts.includes("10.*") && hosts.includes("192.168.*") && hosts.includes("172.16.*"));
            // The alerts' job is the Service name Prometheus derives it from.
            const groups = await out(m.ruleGroups);
            assert.match(ruleList(groups).find((r) => r.alert === "MlflowTrackingDown")!.expr, /job="mlflow-tracking"/);
        });

        it("scrapes KServe predictor pods on MLServer's declared metrics port 8082", async () => {
            const m = await build("mon-pm");
            const pm = only(M.PodMonitor, "mon-pm-model-servers").inputs;
            assert.deepEqual(pm.spec.selector, MODEL_SERVER_SELECTOR);
            assert.deepEqual(pm.spec.selector.matchExpressions, [{ key: "serving.kserve.io/inferenceservice", operator: "Exists" }]);
            assert.deepEqual(pm.spec.namespaceSelector, { matchNames: ["ml"] });
            const [ep] = pm.spec.podMetricsEndpoints;
            assert.equal(ep.port, "metrics");
            assert.equal(ep.targetPort, undefined, "targetPort is deprecated and also only matches declared ports");
            assert.equal(ep.path, "/metrics");
            // The port name resolves, in the ServingRuntime's container, to MLServer's metrics port.
            const runtime = servingRuntimeSpec("registry.example.com/ml/runtime:1");
            const declared = runtime.containers[0].ports.filter((p) => p.name === ep.port);
            assert.deepEqual(declared, [{ name: "metrics", containerPort: 8082, protocol: "TCP" }]);
            assert.deepEqual(declared[0], MLSERVER_PORTS.metrics);
            assert.deepEqual(pm.spec.podTargetLabels, ["serving.kserve.io/inferenceservice"]);
            assert.equal(pm.metadata.labels.release, "kube-prometheus-stack");
            // The PodMonitor's job label is <namespace>/<name>, which scopes the model-server alerts.
            for (const r of (await out(m.ruleGroups)).find((g) => g.name === "mlflow-platform.model-serving")!.rules) {
                assert.match(r.expr, /job="ml\/mon-pm-model-servers"/, r.alert);
            }
        });

        it("labels every monitor and rule for the configured Prometheus release", async () => {
            await build("mon-rel", { config: { prometheusRelease: "prom" } });
            for (const t of [M.ServiceMonitor, M.PodMonitor, M.PrometheusRule]) assert.equal(find(t)[0].inputs.metadata.labels.release, "prom");
        });

        it("can leave model servers out", async () => {
            const m = await build("mon-nopm", { config: { modelServers: false } });
            assert.equal(m.podMonitor, undefined);
            assert.equal(find(M.PodMonitor).length, 0);
            assert.ok(!(await out(m.ruleGroups)).some((g) => g.name === "mlflow-platform.model-serving"));
        });

        it("validates every custom object against the prometheus-operator models", async () => {
            await build("mon-models", { config: { runbookBaseUrl: "https://runbooks.example.com/mlflow" } });
            const objects = [...find(M.ServiceMonitor), ...find(M.PodMonitor), ...find(M.PrometheusRule)].map((r) => r.inputs);
            assert.equal(objects.length, 3);
            const models: Record<string, any> = { ServiceMonitor, PodMonitor, PrometheusRule };
            for (const o of objects) {
                assert.equal(o.apiVersion, "monitoring.coreos.com/v1");
                assert.doesNotThrow(() => new models[o.kind](o).validate(), `${o.kind} ${o.metadata.name}`);
            }
            // The validator really checks: a rule without expr or a numeric interval is refused.
            assert.throws(() => new PrometheusRule({ metadata: { name: "x" }, spec: { groups: [{ name: "g", rules: [{ alert: "A" }] }] } }).validate());
            assert.throws(() => new ServiceMonitor({ metadata: { name: "x" }, spec: { selector: {}, endpoints: [{ interval: 30 }] } }).validate());
        });

        it("watches PostgreSQL and the PVCs the platform's StatefulSets really create", async () => {
            const db = new Database(
                "mlflow",
                { namespace: "ml", config: databaseSchema.parse({ storageSize: "1Gi", resources: smallResources }) },
                { providers: [new k8s.Provider("db-k8s", {})] },
            );
            const m = new Monitoring("mon-db", fixture({ postgresStatefulSet: db.statefulSet!.metadata.name, volumeStatefulSets: [db.statefulSet!.metadata.name] }));
            await settle(db.statefulSet!, m.prometheusRule);
            const sts = only(T.StatefulSet, "mlflow-statefulset").inputs;
            const rules = ruleList(await out(m.ruleGroups));
            const pg = rules.find((r) => r.alert === "MlflowPostgresDown")!;
            assert.match(pg.expr, new RegExp(`statefulset="${sts.metadata.name}"`));
            assert.match(pg.expr, /namespace="ml"/);
            // The StatefulSet's PVCs are named <claim template>-<statefulset>-<ordinal>.
            const pvc = `${sts.spec.volumeClaimTemplates[0].metadata.name}-${sts.metadata.name}-0`;
            const re = /persistentvolumeclaim=~"([^"]+)"/.exec(rules.find((r) => r.alert === "MlflowVolumeNearlyFull")!.expr)![1];
            assert.ok(new RegExp(`^(?:${re})$`).test(pvc), `${re} must match ${pvc}`);
            assert.ok(!new RegExp(`^(?:${re})$`).test("data-other-0"));
        });

        it("drops the PostgreSQL and volume alerts for an external database", async () => {
            const m = await build("mon-ext", { postgresStatefulSet: undefined, volumeStatefulSets: [] });
            const names = ruleList(await out(m.ruleGroups)).map((r) => r.alert);
            assert.ok(!names.includes("MlflowPostgresDown") && !names.includes("MlflowVolumeNearlyFull"));
            assert.ok(names.includes("MlflowTrackingDown"));
        });
    });

    describe("alert rules", () => {
        it("carry a severity, a `for`, summary, description and runbook hint, scoped to this platform", async () => {
            const m = await build("mon-rules", { config: { runbookBaseUrl: "https://runbooks.example.com/mlflow" } });
            const sent = only(M.PrometheusRule, "mon-rules-alerts").inputs.spec.groups as RuleGroup[];
            assert.deepEqual(sent, await out(m.ruleGroups));
            const rules = ruleList(sent);
            assert.deepEqual(rules.map((r) => r.alert).sort(), [
                "MlflowPostgresDown",
                "MlflowTrackingDown",
                "MlflowTrackingHighErrorRatio",
                "MlflowTrackingHighLatency",
                "MlflowTrackingTargetDown",
                "MlflowVolumeNearlyFull",
                "ModelServerHighErrorRatio",
                "ModelServerTargetDown",
            ]);
            for (const r of rules) {
                assert.match(r.labels.severity, /^(critical|warning)$/, r.alert);
                assert.ok(durationSeconds(r.for) >= 5 * 60, `${r.alert}: for ${r.for}`);
                for (const a of ["summary", "description", "runbook"]) assert.ok(r.annotations[a]?.length > 20, `${r.alert}: ${a}`);
                assert.equal(r.annotations.runbook_url, `https://runbooks.example.com/mlflow#${r.alert.toLowerCase()}`);
                // Every selector is pinned to our namespace and job, StatefulSet or PVCs, or to our PodMonitor's job.
                for (const sel of r.expr.match(/\{[^}]*\}/g)!) {
                    assert.ok(/namespace="ml"/.test(sel) || /job="ml\/mon-rules-model-servers"/.test(sel), `${r.alert}: unscoped selector ${sel}`);
                    assert.ok(/job=|statefulset=|persistentvolumeclaim=~/.test(sel), `${r.alert}: ${sel} needs a job, StatefulSet or PVC matcher`);
                }
            }
        });

        it("take thresholds from the config", async () => {
            const m = await build("mon-thr", { config: { thresholds: { errorRatio: 0.2, latencyP95Seconds: 5, volumeFreeRatio: 0.25 } } });
            const byName = Object.fromEntries(ruleList(await out(m.ruleGroups)).map((r) => [r.alert, r]));
            assert.match(byName.MlflowTrackingHighErrorRatio.expr, / > 0\.2$/);
            assert.match(byName.MlflowTrackingHighErrorRatio.annotations.description, /threshold 20%/);
            assert.match(byName.MlflowTrackingHighLatency.expr, / > 5$/);
            assert.match(byName.MlflowVolumeNearlyFull.expr, / < 0\.25$/);
            assert.match(byName.ModelServerHighErrorRatio.expr, / > 0\.05$/, "unset thresholds keep their default");
        });

        it("use only metric and label names the exporters really emit (captured from MLflow 3.17.2 and MLServer 1.7.1)", () => {
            const captured = new Map([...exposition("mlflow-3.17.2.metrics.txt"), ...exposition("mlserver-1.7.1.metrics.txt")]);
            const exprs = ruleList(alertRules(FIXTURE_SCOPE, THRESHOLDS)).map((r) => r.expr);
            const dashboard = platformDashboard({ uid: "u", title: "t", selectors: selectorsFor(FIXTURE_SCOPE) }) as any;
            exprs.push(...dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((t: any) => t.expr)));
            const used = new Set(exprs.flatMap(metricNames));
            for (const name of used) assert.ok(METRIC_SOURCES[name], `${name} has no entry in METRIC_SOURCES`);
            for (const name of Object.keys(METRIC_SOURCES)) assert.ok(used.has(name), `METRIC_SOURCES lists unused ${name}`);
            // Application metrics must appear in the real exporters' output, with the labels we use.
            const appLabels = new Set<string>();
            for (const name of used) {
                if (!/^(mlflow_|model_infer_|rest_server_)/.test(name)) continue;
                assert.ok(captured.has(name), `${name} is not in the captured /metrics output`);
                captured.get(name)!.forEach((l) => appLabels.add(l));
            }
            const infra = new Set(["le", "statefulset", "persistentvolumeclaim"]); // kube-state-metrics, kubelet, histogram
            for (const l of new Set(exprs.flatMap(labelNames))) {
                assert.ok(TARGET_LABELS.has(l) || appLabels.has(l) || infra.has(l), `label ${l} is emitted by no exporter`);
            }
            for (const l of ["status", "method", "mlflow_version", "model", "path", "status_code"]) assert.ok(appLabels.has(l), l);
            assert.ok(!captured.get("mlflow_http_request_total")!.has("path"), "MLflow's exporter has no path label (group_by is the version)");
        });
    });

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

    describe("kube-prometheus-stack (optional Helm release)", () => {
        it("is off by default", async () => {
            const m = await build("mon-nostack");
            assert.equal(m.stack, undefined);
            assert.equal(find(M.Release).length, 0);
            assert.equal(m.grafanaAdminPassword, undefined);
        });

        it("is pinned and configured to load the platform's monitors, rules and dashboard", async () => {
            const m = await build("mon-stack", { config: { installStack: true } });
            const rel = only(M.Release, "mon-stack-stack").inputs;
            assert.equal(rel.chart, "kube-prometheus-stack");
            assert.equal(rel.version, KUBE_PROMETHEUS_STACK_VERSION);
            assert.match(rel.version, /^\d+\.\d+\.\d+$/);
            assert.equal(rel.repositoryOpts.repo, KUBE_PROMETHEUS_STACK_REPO);
            assert.equal(rel.name, "kube-prometheus-stack", "Helm release name = the `release` label the chart's Prometheus selects");
            assert.equal(rel.namespace, "monitoring");
            // The Grafana admin password makes the values secret; unwrap to assert on them.
            assert.ok(isSecretValue(rel.values), "values carry the Grafana admin password and must be secret");
            const values = unsecret(rel.values);
            const spec = values.prometheus.prometheusSpec;
            for (const k of ["serviceMonitorSelector", "podMonitorSelector", "ruleSelector"]) assert.deepEqual(spec[k], { matchLabels: { release: "kube-prometheus-stack" } }, k);
            for (const k of ["serviceMonitorNamespaceSelector", "podMonitorNamespaceSelector", "ruleNamespaceSelector"]) assert.deepEqual(spec[k], {}, k);
            const sidecar = values.grafana.sidecar.dashboards;
            assert.equal(sidecar.enabled, true);
            assert.equal(sidecar.label, "grafana_dashboard");
            assert.equal(sidecar.labelValue, "1");
            assert.deepEqual(sidecar.searchNamespace, ["monitoring", "ml"]);
            assert.equal(values.grafana.adminPassword.length, 32);
            assert.equal(await pulumi.isSecret(m.grafanaAdminPassword!), true);
            // Our custom resources wait for the chart's CRDs.
            const releaseUrn = await out(m.stack!.urn);
            for (const t of [M.ServiceMonitor, M.PodMonitor, M.PrometheusRule]) assert.ok(find(t)[0].dependencies.includes(releaseUrn), `${t} must depend on the release`);
        });
    });

    // ---------------------------------------------------------------------------------------------------
    // promtool: needs the Debian `prometheus` package (it ships promtool); the test installs it with
    // scripts/tools/ensure-apt.sh on first run (root or passwordless sudo), then it is cached by dpkg.
    // ---------------------------------------------------------------------------------------------------
    describe("promtool (Debian package `prometheus`, installed by the test)", function () {
        this.timeout(600_000);
        let dir: string;
        let rulesFile: string;

        before(async function () {
            execFileSync(path.join(ROOT, "scripts/tools/ensure-apt.sh"), ["prometheus"], { stdio: ["ignore", "inherit", "inherit"] });
            dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlflow-rules-"));
            // The rules exactly as the component sends them, for the scope the unit-test fixture is written for.
            resetRegistry();
            const m = new Monitoring(
                "mlflow",
                { ...fixture(), namespace: "mlflow" },
                { providers: [new k8s.Provider("promtool-k8s", {})] },
            );
            await settle(m.prometheusRule);
            const groups = only(M.PrometheusRule, "mlflow-alerts").inputs.spec.groups;
            assert.deepEqual(groups, alertRules(FIXTURE_SCOPE, THRESHOLDS), "the fixture scope must be what the component renders");
            rulesFile = path.join(dir, "rules.yaml");
            fs.writeFileSync(rulesFile, toYaml({ groups }, { lineWidth: 0 }));
            fs.copyFileSync(path.join(MONITORING, "rules.test.yaml"), path.join(dir, "rules.test.yaml"));
        });

        after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

        it("`promtool check rules` accepts the rendered rule groups", () => {
            const output = execFileSync("promtool", ["check", "rules", rulesFile], { encoding: "utf8" });
            assert.match(output, /SUCCESS: 8 rules found/);
        });

        it("`promtool test rules`: every alert fires on realistic series, at the right time, and not for other apps", () => {
            const tests = parseYaml(fs.readFileSync(path.join(dir, "rules.test.yaml"), "utf8"));
            const tested = new Set(tests.tests.flatMap((t: any) => t.alert_rule_test.filter((a: any) => a.exp_alerts.length).map((a: any) => a.alertname)));
            const all = ruleList(alertRules(FIXTURE_SCOPE, THRESHOLDS)).map((r) => r.alert);
            assert.deepEqual([...tested].sort(), [...all].sort(), "each alert has a firing case");
            try {
                execFileSync("promtool", ["test", "rules", "rules.test.yaml"], { cwd: dir, encoding: "utf8", stdio: "pipe" });
            } catch (e: any) {
                assert.fail(`promtool test rules failed:\n${e.stdout}${e.stderr}`);
            }
        });

        it("`promtool test rules` catches a rule that is not scoped (the tests have teeth)", () => {
            const loose = fs.readFileSync(rulesFile, "utf8").replaceAll('namespace="mlflow",job="mlflow-tracking"', 'job="mlflow-tracking"');
            fs.writeFileSync(path.join(dir, "rules.yaml"), loose);
            try {
                let failure: any;
                try {
                    execFileSync("promtool", ["test", "rules", "rules.test.yaml"], { cwd: dir, encoding: "utf8", stdio: "pipe" });
                } catch (e) {
                    failure = e;
                }
                assert.ok(failure, "promtool test rules must fail on the unscoped rules");
                assert.equal(failure.status, 1, `${failure.message}`);
                // promtool prints the failed cases on stderr: the error-ratio alert fires for the other namespace too.
                const report = `${failure.stdout}${failure.stderr}`;
                assert.match(report, /FAILED:[\s\S]*alertname: MlflowTrackingHighErrorRatio,/, report);
                assert.match(report, /Labels:\{alertname="MlflowTrackingHighErrorRatio", job="mlflow-tracking", namespace="other", severity="critical"\}/, report);
            } finally {
                fs.writeFileSync(path.join(dir, "rules.yaml"), toYaml({ groups: alertRules(FIXTURE_SCOPE, THRESHOLDS) }, { lineWidth: 0 }));
            }
        });
    });
});
