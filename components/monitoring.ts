import { createHash } from "crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { platformDashboard } from "./dashboards/platform";
import { deepMerge, labels } from "./kube";
import { MLSERVER_PORTS } from "./modelServing";

const COMPONENT = "monitoring";

/** kube-prometheus-stack, the newest release found (2026-09-13); no Helm repository is reachable from CI to re-check. */
export const KUBE_PROMETHEUS_STACK_VERSION = "91.5.0";
export const KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts";

/**
 * MLServer serves Prometheus metrics on a separate port, 8082 `/metrics` (`metrics_port`,
 * `metrics_endpoint` in mlserver/settings.py, unchanged since 1.1.0), not on its HTTP port 8080 that
 * KServe's `prometheus.kserve.io/port` annotation names. A PodMonitor can only scrape a port the pod
 * declares (prometheus-operator keeps targets by `__meta_kubernetes_pod_container_port_name`), and
 * KServe's stock kserve-mlserver runtime declares none, so the platform's ServingRuntime must add this
 * entry to its `kserve-container` ports (after the HTTP port: KServe's Service uses ports[0] as :80).
 */
export const MLSERVER_METRICS_PORT = MLSERVER_PORTS.metrics;

/**
 * Where every metric name used by the rules and the dashboard comes from; a name not listed here may not
 * be used. The MLflow and MLServer names were read in the exporters' source and confirmed against live
 * scrapes kept in tests/fixtures/monitoring/.
 */
export const METRIC_SOURCES: Record<string, string> = {
    up: "Prometheus: 1 per successful scrape. job = Service name for a ServiceMonitor target, <namespace>/<PodMonitor name> for a PodMonitor target (prometheus-operator pkg/prometheus/promcfg.go)",
    mlflow_http_request_total:
        "prometheus_flask_exporter 0.23 PrometheusMetrics.export_defaults(): Counter `<prefix>_http_request_total`, labels method, status; " +
        "prefix `mlflow` from mlflow/server/prometheus_exporter.py (GunicornInternalPrometheusMetrics, defaults_prefix=\"mlflow\"). No path label.",
    mlflow_http_request_duration_seconds_bucket:
        "prometheus_flask_exporter 0.23 export_defaults(): Histogram `<prefix>_http_request_duration_seconds`, labels method, status and " +
        "`mlflow_version` (group_by is MLflow's function mlflow_version, so the group label carries the version, not the path); prometheus_client default buckets 5 ms … 10 s",
    kube_statefulset_replicas: "kube-state-metrics StatefulSet collector: spec.replicas, labels namespace, statefulset",
    kube_statefulset_status_replicas_ready: "kube-state-metrics StatefulSet collector: status.readyReplicas, labels namespace, statefulset",
    kubelet_volume_stats_available_bytes: "kubelet /metrics volume stats, labels namespace, persistentvolumeclaim (only for volume plugins that report stats)",
    kubelet_volume_stats_capacity_bytes: "kubelet /metrics volume stats, labels namespace, persistentvolumeclaim",
    model_infer_request_success_total: "MLServer 1.7 mlserver/handlers/dataplane.py: Counter `model_infer_request_success`, labels model, version (REST and gRPC)",
    model_infer_request_failure_total: "MLServer 1.7 mlserver/handlers/dataplane.py: Counter `model_infer_request_failure` (count_exceptions), labels model, version",
    model_infer_request_duration_count: "MLServer 1.7 mlserver/handlers/dataplane.py: Summary `model_infer_request_duration` (every infer call, failed or not), labels model, version",
    model_infer_request_duration_sum: "MLServer 1.7 mlserver/handlers/dataplane.py: Summary `model_infer_request_duration`, labels model, version",
    rest_server_request_duration_seconds_bucket:
        "starlette_exporter 0.24 PrometheusMiddleware with prefix settings.metrics_rest_server_prefix = `rest_server` (mlserver/rest/app.py): " +
        "Histogram `<prefix>_request_duration_seconds`, labels method, path (route template, e.g. /v2/models/{model_name}/infer), status_code, app_name",
};

/** A Prometheus rule group, as PrometheusRule `spec.groups[]` and `promtool` take it. */
export interface RuleGroup {
    name: string;
    rules: AlertRule[];
}
export interface AlertRule {
    alert: string;
    expr: string;
    for: string;
    labels: { severity: "critical" | "warning" };
    annotations: Record<string, string>;
}

/** What the alert expressions are scoped to: concrete names, resolved from the component's inputs. */
export interface AlertScope {
    /** Namespace of the platform (tracking Service, PostgreSQL, PVCs). */
    namespace: string;
    /** `job` label of tracking-server series: the tracking Service's name. */
    trackingJob: string;
    /** `kubectl -l` selector of the tracking pods, for runbook hints. */
    trackingPodSelector: string;
    /** `job` label of MLServer series (`<namespace>/<PodMonitor name>`); undefined when not scraped. */
    modelServerJob?: string;
    /** PostgreSQL StatefulSet; undefined for an external database. */
    postgresStatefulSet?: string;
    /** StatefulSets whose PVCs are watched for free space. */
    volumeStatefulSets: string[];
}

export interface AlertThresholds {
    /** Share of tracking API requests answered 5xx. */
    readonly errorRatio: number;
    /** p95 tracking API latency in seconds, at most 10 (the exporter's largest finite bucket). */
    readonly latencyP95Seconds: number;
    /** Free share of a PVC below which it is nearly full. */
    readonly volumeFreeRatio: number;
    /** Share of failed inference calls per model. */
    readonly modelErrorRatio: number;
}

export const DEFAULT_THRESHOLDS: AlertThresholds = { errorRatio: 0.05, latencyP95Seconds: 2, volumeFreeRatio: 0.1, modelErrorRatio: 0.05 };

/** A standard Kubernetes label selector. */
export interface LabelSelector {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

/** KServe labels every predictor pod with its InferenceService and `component: predictor` (pkg/constants). */
/** The InferenceService name on model-server series: podTargetLabels copies the pod label, sanitized. */
export const ISVC_LABEL = "serving_kserve_io_inferenceservice";

export const DEFAULT_MODEL_SERVER_SELECTOR: LabelSelector = {
    matchLabels: { component: "predictor" },
    matchExpressions: [{ key: "serving.kserve.io/inferenceservice", operator: "Exists" }],
};

export interface MonitoringArgs {
    /** Namespace of the platform; the ServiceMonitor, PodMonitor, PrometheusRule and dashboard ConfigMap go here. Required. */
    readonly namespace: pulumi.Input<string>;
    /** The tracking server to scrape. Required. */
    readonly tracking: {
        /** Name of the tracking Service (`TrackingServer.serviceName`); Prometheus uses it as the `job` label, which scopes the alerts. Required. */
        readonly serviceName: pulumi.Input<string>;
        /**
         * Labels the tracking Service carries and the ServiceMonitor selects it by:
         * `selectorLabels("tracking", <instance>)` from components/kube.ts. Required.
         */
        readonly selectorLabels: pulumi.Input<Record<string, string>>;
    };
    /** How often Prometheus scrapes each target, a Prometheus duration. Default `"30s"`. */
    readonly scrapeInterval?: string;
    /** Scrape timeout, a Prometheus duration no longer than `scrapeInterval`. Default `"10s"`. */
    readonly scrapeTimeout?: string;
    /**
     * Helm release name of the kube-prometheus-stack whose Prometheus should load these objects: they
     * carry the label `release: <value>`, the chart's default selector. Default `"kube-prometheus-stack"`.
     */
    readonly prometheusRelease?: string;
    /**
     * KServe predictor pods running MLServer. Default: enabled, InferenceServices in `namespace`, the
     * selector DEFAULT_MODEL_SERVER_SELECTOR, port `metrics` (MLSERVER_METRICS_PORT, 8082), path `/metrics`.
     */
    readonly modelServers?: {
        /** Create the PodMonitor and the model-server alerts. Default `true`. */
        readonly enabled?: boolean;
        /** Namespaces of the InferenceServices. Default `[namespace]`. */
        readonly namespaces?: pulumi.Input<string>[];
        /** Pod label selector. Default DEFAULT_MODEL_SERVER_SELECTOR (`serving.kserve.io/inferenceservice` exists, `component: predictor`). */
        readonly selector?: LabelSelector;
        /** Name of the container port serving MLServer's metrics; the ServingRuntime must declare it. Default `"metrics"`. */
        readonly portName?: string;
        /** Metrics path (MLServer `metrics_endpoint`). Default `"/metrics"`. */
        readonly path?: string;
    };
    /** Name of the in-cluster PostgreSQL StatefulSet (`Database.statefulSet.metadata.name`). Default: none, no PostgreSQL alert (external database). */
    readonly postgresStatefulSet?: pulumi.Input<string>;
    /** StatefulSets whose PVCs (`<claim>-<statefulset>-<ordinal>`) are watched for free space. Default: `[postgresStatefulSet]` when set, else none. */
    readonly volumeStatefulSets?: pulumi.Input<string>[];
    /** Alert thresholds. Default DEFAULT_THRESHOLDS: errorRatio 0.05, latencyP95Seconds 2, volumeFreeRatio 0.1, modelErrorRatio 0.05. */
    readonly thresholds?: Partial<AlertThresholds>;
    /** Base URL of your runbooks; each alert then also gets `runbook_url: <base>#<alertname in lower case>`. Default: none (the inline `runbook` hint only). */
    readonly runbookBaseUrl?: string;
    /** The Grafana dashboard ConfigMap. Default: enabled, label `grafana_dashboard: "1"` (the Grafana sidecar's default). */
    readonly dashboard?: {
        /** Default `true`. */
        readonly enabled?: boolean;
        /** Label key the Grafana dashboard sidecar watches. Default `"grafana_dashboard"`. */
        readonly label?: string;
        /** Its value. Default `"1"`. */
        readonly labelValue?: string;
    };
    /**
     * Install kube-prometheus-stack (Prometheus operator, Prometheus, Alertmanager, Grafana,
     * kube-state-metrics, node-exporter) as a pinned Helm release named `prometheusRelease`. Default: disabled.
     */
    readonly stack?: {
        /** Default `false`: most clusters already run a Prometheus. */
        readonly enabled?: boolean;
        /** Namespace of the release, created by Helm. Default `"monitoring"`. */
        readonly namespace?: string;
        /** Chart version. Default KUBE_PROMETHEUS_STACK_VERSION. */
        readonly version?: string;
        /** Extra chart values, deep-merged over the platform's (yours win). Default `{}`. */
        readonly values?: Record<string, unknown>;
    };
}

/**
 * Prometheus monitoring of the platform: a ServiceMonitor for the tracking server, a PodMonitor for
 * KServe's MLServer predictors, a PrometheusRule with alerts an operator acts on, a Grafana dashboard
 * ConfigMap for the sidecar, and optionally a pinned kube-prometheus-stack that loads all of them.
 */
export class Monitoring extends pulumi.ComponentResource {
    public readonly serviceMonitor: k8s.apiextensions.CustomResource;
    public readonly podMonitor?: k8s.apiextensions.CustomResource;
    public readonly prometheusRule: k8s.apiextensions.CustomResource;
    public readonly dashboard?: k8s.core.v1.ConfigMap;
    public readonly stack?: k8s.helm.v3.Release;
    /** The alert rule groups, as sent in the PrometheusRule. */
    public readonly ruleGroups: pulumi.Output<RuleGroup[]>;
    /** uid of the Grafana dashboard. */
    public readonly dashboardUid: pulumi.Output<string>;
    /** Grafana's admin password when the stack is installed (a Pulumi secret). */
    public readonly grafanaAdminPassword?: pulumi.Output<string>;

    constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-platform:monitoring:Monitoring", name, {}, opts);
        const cfg = resolveArgs(name, args);
        const child = { parent: this };
        const promLabels = { ...labels(COMPONENT, name), release: cfg.prometheusRelease };

        if (cfg.stack.enabled) {
            const password = new random.RandomPassword(`${name}-grafana-admin`, { length: 32, special: false }, child);
            this.grafanaAdminPassword = pulumi.secret(password.result);
            // helm.v3.Release rather than helm.v4.Chart: the chart relies on hooks (the admission webhook's
            // certificate Jobs) and installs its CRDs from crds/, which only Helm itself handles.
            this.stack = new k8s.helm.v3.Release(
                `${name}-stack`,
                {
                    // The Helm release name is what the chart's own objects carry as `release`.
                    name: cfg.prometheusRelease,
                    chart: "kube-prometheus-stack",
                    version: cfg.stack.version,
                    repositoryOpts: { repo: KUBE_PROMETHEUS_STACK_REPO },
                    namespace: cfg.stack.namespace,
                    createNamespace: true,
                    atomic: true,
                    timeout: 900,
                    values: pulumi
                        .all([args.namespace, this.grafanaAdminPassword])
                        .apply(([ns, adminPassword]) =>
                            deepMerge(stackValues(cfg.prometheusRelease, cfg.dashboard, [cfg.stack.namespace, ns], adminPassword), cfg.stack.values),
                        ),
                },
                child,
            );
        }
        // Custom resources need the stack's CRDs first when the stack is ours; otherwise they must already exist.
        const crOpts: pulumi.CustomResourceOptions = { parent: this, dependsOn: this.stack ? [this.stack] : [] };

        // No basicAuth: in this platform nginx basic auth sits at the Ingress, and Prometheus scrapes the
        // pods directly through the Service's endpoints, so /metrics answers without credentials. The
        // scrape's Host header is the pod IP (e.g. 10.42.0.7:5000), which MLflow's host-check middleware
        // accepts because the tracking server's --allowed-hosts lists the private IPv4 ranges
        // (components/trackingServer.ts allowedHosts); an IPv6-only cluster would need its range added.
        this.serviceMonitor = new k8s.apiextensions.CustomResource(
            `${name}-tracking`,
            {
                apiVersion: "monitoring.coreos.com/v1",
                kind: "ServiceMonitor",
                metadata: { name: `${name}-tracking`, namespace: args.namespace, labels: promLabels },
                spec: {
                    selector: { matchLabels: args.tracking.selectorLabels },
                    namespaceSelector: { matchNames: [args.namespace] },
                    endpoints: [
                        {
                            port: "http",
                            path: "/metrics",
                            scheme: "http",
                            interval: cfg.scrapeInterval,
                            scrapeTimeout: cfg.scrapeTimeout,
                        },
                    ],
                },
            },
            crOpts,
        );

        const podMonitorName = `${name}-model-servers`;
        if (cfg.modelServers.enabled) {
            this.podMonitor = new k8s.apiextensions.CustomResource(
                podMonitorName,
                {
                    apiVersion: "monitoring.coreos.com/v1",
                    kind: "PodMonitor",
                    metadata: { name: podMonitorName, namespace: args.namespace, labels: promLabels },
                    spec: {
                        selector: cfg.modelServers.selector,
                        namespaceSelector: { matchNames: args.modelServers?.namespaces ?? [args.namespace] },
                        // Predictor pods carry no app.kubernetes.io labels; keep the InferenceService name.
                        podTargetLabels: ["serving.kserve.io/inferenceservice"],
                        podMetricsEndpoints: [
                            {
                                port: cfg.modelServers.portName,
                                path: cfg.modelServers.path,
                                scheme: "http",
                                interval: cfg.scrapeInterval,
                                scrapeTimeout: cfg.scrapeTimeout,
                            },
                        ],
                    },
                },
                crOpts,
            );
        }

        const scope = pulumi
            .all([
                args.namespace,
                args.tracking.serviceName,
                args.tracking.selectorLabels,
                args.postgresStatefulSet,
                pulumi.all(args.volumeStatefulSets ?? (args.postgresStatefulSet !== undefined ? [args.postgresStatefulSet] : [])),
            ])
            .apply(
                ([namespace, trackingJob, trackingLabels, postgres, volumes]): AlertScope => ({
                    namespace,
                    trackingJob,
                    trackingPodSelector: Object.entries(trackingLabels).map(([k, v]) => `${k}=${v}`).join(","),
                    modelServerJob: cfg.modelServers.enabled ? `${namespace}/${podMonitorName}` : undefined,
                    postgresStatefulSet: postgres || undefined,
                    volumeStatefulSets: volumes.filter((v) => !!v),
                }),
            );
        this.ruleGroups = scope.apply((s) => alertRules(s, cfg.thresholds, cfg.runbookBaseUrl));
        this.prometheusRule = new k8s.apiextensions.CustomResource(
            `${name}-alerts`,
            {
                apiVersion: "monitoring.coreos.com/v1",
                kind: "PrometheusRule",
                metadata: { name: `${name}-alerts`, namespace: args.namespace, labels: promLabels },
                spec: { groups: this.ruleGroups },
            },
            crOpts,
        );

        this.dashboardUid = pulumi.output(args.namespace).apply(dashboardUid);
        if (cfg.dashboard.enabled) {
            this.dashboard = new k8s.core.v1.ConfigMap(
                `${name}-dashboard`,
                {
                    metadata: {
                        name: `${name}-dashboard`,
                        namespace: args.namespace,
                        labels: { ...labels(COMPONENT, name), [cfg.dashboard.label]: cfg.dashboard.labelValue },
                    },
                    // The key becomes the sidecar's file name: one per namespace, so two platforms sharing a
                    // Grafana (dev and staging in one cluster) do not overwrite each other's dashboard.
                    data: scope.apply((s) => ({
                        [`${dashboardUid(s.namespace)}.json`]: JSON.stringify(
                            platformDashboard({ uid: dashboardUid(s.namespace), title: `MLflow platform (${s.namespace})`, selectors: selectorsFor(s) }),
                            null,
                            1,
                        ),
                    })),
                },
                child,
            );
        }

        this.registerOutputs({
            ruleGroups: this.ruleGroups,
            dashboardUid: this.dashboardUid,
            grafanaAdminPassword: this.grafanaAdminPassword,
        });
    }
}

/** Dashboard uid: readable, one per platform namespace, within Grafana's 40 characters. */
export function dashboardUid(namespace: string): string {
    const uid = `mlflow-${namespace}`;
    return uid.length <= 40 ? uid : `mlflow-${namespace.slice(0, 24)}-${createHash("sha256").update(namespace).digest("hex").slice(0, 8)}`;
}

/** A PromQL string literal. */
const q = (s: string): string => JSON.stringify(s);
const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Label matchers (without braces) that scope each exporter's series to this platform. */
export function selectorsFor(s: AlertScope) {
    return {
        tracking: `namespace=${q(s.namespace)},job=${q(s.trackingJob)}`,
        modelServers: s.modelServerJob ? `job=${q(s.modelServerJob)}` : undefined,
        postgres: s.postgresStatefulSet ? `namespace=${q(s.namespace)},statefulset=${q(s.postgresStatefulSet)}` : undefined,
        // StatefulSet PVCs are named <claim template>-<statefulset>-<ordinal>.
        volumes: s.volumeStatefulSets.length
            ? `namespace=${q(s.namespace)},persistentvolumeclaim=~${q(`.+-(${s.volumeStatefulSets.map(escapeRegex).join("|")})-[0-9]+`)}`
            : undefined,
    };
}

/**
 * The platform's alerts. Every expression is scoped by namespace and job (or StatefulSet/PVC names), so
 * it never fires for another application scraped by the same Prometheus; metric names come from
 * METRIC_SOURCES only.
 */
export function alertRules(s: AlertScope, t: AlertThresholds = DEFAULT_THRESHOLDS, runbookBaseUrl?: string): RuleGroup[] {
    const sel = selectorsFor(s);
    const pct = (r: number) => `${+(r * 100).toFixed(2)}%`;
    const withRunbook = (rule: AlertRule): AlertRule =>
        runbookBaseUrl ? { ...rule, annotations: { ...rule.annotations, runbook_url: `${runbookBaseUrl}#${rule.alert.toLowerCase()}` } } : rule;
    const ns = s.namespace;

    const tracking: AlertRule[] = [
        {
            alert: "MlflowTrackingDown",
            // No target of the job is up, or none is discovered at all (absent).
            expr: `sum by (namespace, job) (up{${sel.tracking}}) == 0 or absent(up{${sel.tracking}})`,
            for: "5m",
            labels: { severity: "critical" },
            annotations: {
                summary: "MLflow tracking server {{ $labels.namespace }}/{{ $labels.job }} is down",
                description: "No tracking server pod has answered a /metrics scrape for 5 minutes, or none is discovered: clients cannot log runs or load registered models.",
                runbook: `kubectl -n ${ns} get pods,endpoints -l ${s.trackingPodSelector}; kubectl -n ${ns} logs -l ${s.trackingPodSelector} --tail=100. Look for database or S3 errors, a failed migration Job, and 403 "Invalid Host header" (--allowed-hosts).`,
            },
        },
        {
            alert: "MlflowTrackingTargetDown",
            expr: `up{${sel.tracking}} == 0`,
            for: "10m",
            labels: { severity: "warning" },
            annotations: {
                summary: "A tracking server replica in {{ $labels.namespace }} cannot be scraped",
                description: "{{ $labels.pod }} ({{ $labels.instance }}) has failed its /metrics scrape for 10 minutes; other replicas may still serve.",
                runbook: `kubectl -n ${ns} describe pod {{ $labels.pod }}; check readiness (/health), restarts and OOM kills.`,
            },
        },
        {
            alert: "MlflowTrackingHighErrorRatio",
            expr:
                `sum by (namespace, job) (rate(mlflow_http_request_total{${sel.tracking},status=~"5.."}[5m]))` +
                ` / sum by (namespace, job) (rate(mlflow_http_request_total{${sel.tracking}}[5m])) > ${t.errorRatio}`,
            for: "10m",
            labels: { severity: "critical" },
            annotations: {
                summary: "MLflow tracking server {{ $labels.namespace }}/{{ $labels.job }} answers 5xx",
                description: `{{ $value | humanizePercentage }} of tracking API requests failed with 5xx over 5 minutes (threshold ${pct(t.errorRatio)}).`,
                runbook: `kubectl -n ${ns} logs -l ${s.trackingPodSelector} --tail=200 | grep -i error; usual causes: PostgreSQL down or out of connections, S3 credentials or bucket errors.`,
            },
        },
        {
            alert: "MlflowTrackingHighLatency",
            expr: `histogram_quantile(0.95, sum by (namespace, job, le) (rate(mlflow_http_request_duration_seconds_bucket{${sel.tracking}}[5m]))) > ${t.latencyP95Seconds}`,
            for: "15m",
            labels: { severity: "warning" },
            annotations: {
                summary: "MLflow tracking API is slow in {{ $labels.namespace }}",
                description: `p95 latency of tracking API requests is {{ $value | humanizeDuration }} (threshold ${t.latencyP95Seconds}s). Artifact transfers are not in this histogram.`,
                runbook: `Check PostgreSQL load and connections (pg_stat_activity), CPU throttling of ${s.trackingJob} pods, and large search_runs queries; scale tracking.replicas or workers.`,
            },
        },
    ];

    const storage: AlertRule[] = [];
    if (sel.postgres) {
        storage.push({
            alert: "MlflowPostgresDown",
            expr: `max by (namespace, statefulset) (kube_statefulset_status_replicas_ready{${sel.postgres}}) < max by (namespace, statefulset) (kube_statefulset_replicas{${sel.postgres}})`,
            for: "5m",
            labels: { severity: "critical" },
            annotations: {
                summary: "PostgreSQL {{ $labels.namespace }}/{{ $labels.statefulset }} is not ready",
                description: "The metadata database has had fewer ready replicas than desired for 5 minutes: the tracking server cannot read or write runs and models.",
                runbook: `kubectl -n ${ns} describe statefulset ${s.postgresStatefulSet}; kubectl -n ${ns} logs ${s.postgresStatefulSet}-0; check its PVC is not full (MlflowVolumeNearlyFull).`,
            },
        });
    }
    if (sel.volumes) {
        storage.push({
            alert: "MlflowVolumeNearlyFull",
            expr:
                `max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_available_bytes{${sel.volumes}})` +
                ` / max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{${sel.volumes}}) < ${t.volumeFreeRatio}`,
            for: "15m",
            labels: { severity: "warning" },
            annotations: {
                summary: "Volume {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is nearly full",
                description: `Only {{ $value | humanizePercentage }} of the volume is free (threshold ${pct(t.volumeFreeRatio)}). A full PostgreSQL volume stops all writes; a full MinIO volume rejects artifact uploads.`,
                runbook: `Expand the PVC (kubectl -n ${ns} edit pvc {{ $labels.persistentvolumeclaim }}, if its StorageClass allows expansion) and raise storageSize in the stack config; or delete old runs (mlflow gc) and artifact versions.`,
            },
        });
    }

    const serving: AlertRule[] = [];
    if (sel.modelServers) {
        serving.push(
            {
                alert: "ModelServerTargetDown",
                expr: `up{${sel.modelServers}} == 0`,
                for: "10m",
                labels: { severity: "warning" },
                annotations: {
                    summary: "Model server {{ $labels.namespace }}/{{ $labels.pod }} cannot be scraped",
                    description: "MLServer's metrics port has not answered for 10 minutes: the predictor is down, restarting, or its runtime does not declare the metrics port.",
                    runbook: "kubectl -n {{ $labels.namespace }} describe pod {{ $labels.pod }}; kubectl -n {{ $labels.namespace }} logs {{ $labels.pod }} -c kserve-container. Model load errors (\"model … does not exist\") usually mean missing dependencies in the model environment.",
                },
            },
            {
                alert: "ModelServerHighErrorRatio",
                // The duration summary counts every call, so a model that never succeeds still alerts.
                expr:
                    `sum by (namespace, ${ISVC_LABEL}, model) (rate(model_infer_request_failure_total{${sel.modelServers}}[5m]))` +
                    ` / sum by (namespace, ${ISVC_LABEL}, model) (rate(model_infer_request_duration_count{${sel.modelServers}}[5m])) > ${t.modelErrorRatio}`,
                for: "10m",
                labels: { severity: "critical" },
                annotations: {
                    summary: `Model {{ $labels.model }} of InferenceService {{ $labels.namespace }}/{{ $labels.${ISVC_LABEL} }} fails inference requests`,
                    description: `{{ $value | humanizePercentage }} of inference calls raised an error over 5 minutes (threshold ${pct(t.modelErrorRatio)}).`,
                    runbook: `kubectl -n {{ $labels.namespace }} logs -l serving.kserve.io/inferenceservice={{ $labels.${ISVC_LABEL} }} -c kserve-container --tail=200; compare the request inputs with the model signature; if a new version broke it, move the alias back to the previous one.`,
                },
            },
        );
    }

    return [
        { name: "mlflow-platform.tracking", rules: tracking },
        { name: "mlflow-platform.storage", rules: storage },
        { name: "mlflow-platform.model-serving", rules: serving },
    ]
        .filter((g) => g.rules.length > 0)
        .map((g) => ({ ...g, rules: g.rules.map(withRunbook) }));
}

/** Values that make the chart's Prometheus load this platform's objects and Grafana its dashboard. */
export function stackValues(
    release: string,
    dashboard: { label: string; labelValue: string },
    dashboardNamespaces: string[],
    grafanaAdminPassword: string,
): Record<string, unknown> {
    const byRelease = { matchLabels: { release } };
    return {
        prometheus: {
            prometheusSpec: {
                serviceMonitorSelector: byRelease,
                podMonitorSelector: byRelease,
                ruleSelector: byRelease,
                // Objects live in the platform namespace, not the release's.
                serviceMonitorNamespaceSelector: {},
                podMonitorNamespaceSelector: {},
                ruleNamespaceSelector: {},
            },
        },
        grafana: {
            adminPassword: grafanaAdminPassword,
            sidecar: {
                dashboards: {
                    enabled: true,
                    label: dashboard.label,
                    labelValue: dashboard.labelValue,
                    // The chart's own dashboards plus the platform's.
                    searchNamespace: [...new Set(dashboardNamespaces)],
                },
            },
        },
    };
}

/** Plain-object deep merge; `over` wins, arrays are replaced. */

// Prometheus duration (model.ParseDuration, as the prometheus-operator CRDs validate it).
const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const HELM_RELEASE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// IANA_SVC_NAME, what a container port name must be.
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;
const SEMVER = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;

/** Milliseconds of a Prometheus duration. */
export function durationMs(d: string): number {
    const m = DURATION.exec(d);
    if (!m || d === "") throw new Error(`not a Prometheus duration: ${d}`);
    const units = [365 * 864e5, 7 * 864e5, 864e5, 36e5, 6e4, 1e3, 1];
    return [m[3], m[5], m[7], m[9], m[11], m[13], m[15]].reduce((sum, v, i) => sum + (v ? Number(v) * units[i] : 0), 0);
}

interface ResolvedArgs {
    scrapeInterval: string;
    scrapeTimeout: string;
    prometheusRelease: string;
    modelServers: { enabled: boolean; selector: LabelSelector; portName: string; path: string };
    thresholds: AlertThresholds;
    runbookBaseUrl?: string;
    dashboard: { enabled: boolean; label: string; labelValue: string };
    stack: { enabled: boolean; namespace: string; version: string; values: Record<string, unknown> };
}

/** Applies the defaults and rejects bad arguments with a message naming the field, the value and the rule. */
export function resolveArgs(name: string, args: MonitoringArgs): ResolvedArgs {
    const fail = (field: string, value: unknown, rule: string): never => {
        throw new Error(`Monitoring ${name}: ${field} = ${JSON.stringify(value)} is invalid: ${rule}`);
    };
    const duration = (field: string, v: string) => {
        if (!DURATION.test(v) || v === "" || durationMs(v) === 0) fail(field, v, "must be a non-zero Prometheus duration such as 30s, 1m or 1m30s");
        return v;
    };
    const ratio = (field: string, v: number) => {
        if (!(typeof v === "number" && v > 0 && v < 1)) fail(field, v, "must be a fraction between 0 and 1 (exclusive), e.g. 0.05 for 5%");
        return v;
    };

    const scrapeInterval = duration("scrapeInterval", args.scrapeInterval ?? "30s");
    const scrapeTimeout = duration("scrapeTimeout", args.scrapeTimeout ?? "10s");
    if (durationMs(scrapeTimeout) > durationMs(scrapeInterval)) {
        fail("scrapeTimeout", scrapeTimeout, `must not exceed scrapeInterval (${scrapeInterval}); Prometheus rejects such a scrape config`);
    }

    const prometheusRelease = args.prometheusRelease ?? "kube-prometheus-stack";
    if (!prometheusRelease || prometheusRelease.length > 63 || !LABEL_VALUE.test(prometheusRelease)) {
        fail("prometheusRelease", prometheusRelease, "must be a Kubernetes label value (≤63 characters of [A-Za-z0-9_.-])");
    }

    const ms = args.modelServers ?? {};
    const portName = ms.portName ?? MLSERVER_METRICS_PORT.name;
    if (!PORT_NAME.test(portName)) fail("modelServers.portName", portName, "must be a container port name (IANA_SVC_NAME: ≤15 lowercase letters, digits and single hyphens)");
    const path = ms.path ?? "/metrics";
    if (!path.startsWith("/")) fail("modelServers.path", path, "must start with /");
    const selector = ms.selector ?? DEFAULT_MODEL_SERVER_SELECTOR;
    if (!Object.keys(selector.matchLabels ?? {}).length && !(selector.matchExpressions ?? []).length) {
        fail("modelServers.selector", selector, "must select something: an empty selector would scrape every pod in the namespaces");
    }
    for (const e of selector.matchExpressions ?? []) {
        const needsValues = e.operator === "In" || e.operator === "NotIn";
        if (needsValues !== !!e.values?.length) fail("modelServers.selector", e, `operator ${e.operator} ${needsValues ? "needs" : "takes no"} values`);
    }

    const t = { ...DEFAULT_THRESHOLDS, ...(args.thresholds ?? {}) };
    ratio("thresholds.errorRatio", t.errorRatio);
    ratio("thresholds.volumeFreeRatio", t.volumeFreeRatio);
    ratio("thresholds.modelErrorRatio", t.modelErrorRatio);
    if (!(typeof t.latencyP95Seconds === "number" && t.latencyP95Seconds > 0 && t.latencyP95Seconds <= 10)) {
        fail("thresholds.latencyP95Seconds", t.latencyP95Seconds, "must be above 0 and at most 10: MLflow's latency histogram has no finite bucket above 10 s, so a higher p95 cannot be measured");
    }

    if (args.runbookBaseUrl !== undefined && !/^https?:\/\/[^\s#]+$/.test(args.runbookBaseUrl)) {
        fail("runbookBaseUrl", args.runbookBaseUrl, "must be an http(s) URL without a fragment");
    }

    const label = args.dashboard?.label ?? "grafana_dashboard";
    const labelValue = args.dashboard?.labelValue ?? "1";
    if (!LABEL_NAME.test(label) || label.split("/").pop()!.length > 63) fail("dashboard.label", label, "must be a Kubernetes label key");
    if (labelValue.length > 63 || !LABEL_VALUE.test(labelValue)) fail("dashboard.labelValue", labelValue, "must be a Kubernetes label value");

    const stack = {
        enabled: args.stack?.enabled ?? false,
        namespace: args.stack?.namespace ?? "monitoring",
        version: args.stack?.version ?? KUBE_PROMETHEUS_STACK_VERSION,
        values: args.stack?.values ?? {},
    };
    if (stack.enabled) {
        if (prometheusRelease.length > 53 || !HELM_RELEASE.test(prometheusRelease)) {
            fail("prometheusRelease", prometheusRelease, "names the Helm release when stack.enabled, so it must be lowercase letters, digits, - and . (≤53 characters)");
        }
        if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(stack.namespace) || stack.namespace.length > 63) fail("stack.namespace", stack.namespace, "must be a namespace name (DNS label)");
        if (!SEMVER.test(stack.version)) fail("stack.version", stack.version, "must pin an exact chart version such as 91.5.0");
    }

    return {
        scrapeInterval,
        scrapeTimeout,
        prometheusRelease,
        modelServers: { enabled: ms.enabled ?? true, selector, portName, path },
        thresholds: t,
        runbookBaseUrl: args.runbookBaseUrl,
        dashboard: { enabled: args.dashboard?.enabled ?? true, label, labelValue },
        stack,
    };
}
