// Monitoring under Pulumi mocks: the ServiceMonitor, PodMonitor and PrometheusRule sent to Kubernetes,
// checked against the real TrackingServer and ServingRuntime they must select and the operator's models.
import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { Database } from "../../../components/database";
import { databaseSchema } from "../../../components/database/schema";
import { selectorLabels } from "../../../components/kube";
import { MODEL_SERVER_SELECTOR, Monitoring } from "../../../components/monitoring";
import { servingRuntimeSpec } from "../../../components/modelServing/runtime";
import { TrackingServer } from "../../../components/trackingServer";
import { trackingSchema } from "../../../components/trackingServer/schema";
import { MLSERVER_PORTS, TRACKING_PORT } from "../../../shared/ports";
import { assertSelects, find, installMocks, only, out, resetRegistry, settle, smallResourcesWithScratch, T, preUpgradeDump } from "../../harness";
import { build, fixture, M, ruleList } from "./fixture";

// CommonJS builds of the prometheus-operator CRD models (schema validation of what is sent to Kubernetes).
/* eslint-disable @typescript-eslint/no-require-imports */
const { ServiceMonitor } = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor");
const { PodMonitor } = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor");
const { PrometheusRule } = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule");
/* eslint-enable @typescript-eslint/no-require-imports */

describe("Monitoring: the objects sent to Kubernetes", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    describe("what is sent to Kubernetes", () => {
        it("scrapes the tracking Service's `http` port at /metrics, without credentials, labelled for the Prometheus release", async () => {
            // The real TrackingServer, so selector labels and port name are checked against its actual Service.
            const ts = new TrackingServer(
                "mlflow",
                {
                    namespace: "ml",
                    config: trackingSchema.parse({ resources: smallResourcesWithScratch, tmpSizeLimit: "256Mi" }),
                    publicUrl: "http://mlflow.example.com",
                    database: { host: "db", port: 5432, databaseName: "mlflow", user: "mlflow", sslMode: "prefer", passwordSecretName: "db", clientEgress: { ports: [{ port: 5432 }] } },
                    artifacts: { endpoint: "http://minio:9000", bucket: "artifacts", region: "us-east-1", readWriteSecretName: "rw", clientEgress: { ports: [{ port: 9000 }] } },
                    preUpgradeDump,
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
            // The scrape's Host header is the pod IP and port; the tracking server must accept it.
            const hosts: string[] = await out(ts.allowedHosts);
            assert.ok(hosts.includes(`$(POD_IP):${TRACKING_PORT}`));
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
                { namespace: "ml", config: databaseSchema.parse({ storageSize: "1Gi", resources: smallResourcesWithScratch }), retainOnDestroy: true },
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
});
