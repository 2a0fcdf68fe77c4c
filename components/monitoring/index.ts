// Prometheus monitoring of the platform: what Prometheus scrapes, the alerts, the dashboard, and
// optionally the Prometheus stack itself.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { MLSERVER_PORTS } from "../../shared/ports";
import { labels, ScheduledJobWatch } from "../kube";
import { alertRules, AlertScope, BackupScope, BACKUPS, RuleGroup, selectorsFor } from "./alerts";
import { dashboardUid, platformDashboard } from "./dashboard";
import type { MonitoringConfig } from "./schema";
import { KUBE_PROMETHEUS_STACK_REPO, KUBE_PROMETHEUS_STACK_VERSION, stackValues } from "./stack";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
const COMPONENT = "monitoring";
const APP = "monitoring";

/** KServe labels every predictor pod with its InferenceService and `component: predictor` (pkg/constants). */
export const MODEL_SERVER_SELECTOR = {
    matchLabels: { component: "predictor" },
    matchExpressions: [{ key: "serving.kserve.io/inferenceservice", operator: "Exists" }],
};

export interface MonitoringArgs {
    /** Namespace of the platform; the ServiceMonitor, PodMonitor, PrometheusRule and dashboard ConfigMap go here. */
    readonly namespace: pulumi.Input<string>;
    /** `modelServers` already says whether serving runs (the stack resolves it). */
    readonly config: MonitoringConfig;
    /** The tracking server to scrape: its Service (the `job` label, which scopes the alerts) and the labels it selects by. */
    readonly tracking: { readonly serviceName: pulumi.Input<string>; readonly selectorLabels: pulumi.Input<Record<string, string>> };
    /** The in-cluster PostgreSQL StatefulSet; none for an external database (no PostgreSQL alert). */
    readonly postgresStatefulSet?: pulumi.Input<string>;
    /** StatefulSets whose PVCs (`<claim>-<statefulset>-<ordinal>`) are watched for free space. */
    readonly volumeStatefulSets: pulumi.Input<string>[];
    /** The backup CronJobs the stack runs (each component's `watch`); a backup that is off has none, and no alerts. */
    readonly backups: { readonly [what in keyof typeof BACKUPS]?: ScheduledJobWatch };
    /** Namespace of the kube-prometheus-stack release, when `config.installStack`. */
    readonly stackNamespace: string;
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
        super(`mlflow-platform:${COMPONENT}:Monitoring`, name, {}, opts);
        const c = args.config;
        const child = { parent: this };
        const promLabels = { ...labels(COMPONENT, APP, name), release: c.prometheusRelease };

        if (c.installStack) {
            const password = new random.RandomPassword(`${name}-grafana-admin`, { length: 32, special: false }, child);
            this.grafanaAdminPassword = pulumi.secret(password.result);
            // helm.v3.Release rather than helm.v4.Chart: the chart relies on hooks (the admission webhook's
            // certificate Jobs) and installs its CRDs from crds/, which only Helm itself handles.
            this.stack = new k8s.helm.v3.Release(
                `${name}-stack`,
                {
                    // The Helm release name is what the chart's own objects carry as `release`.
                    name: c.prometheusRelease,
                    chart: "kube-prometheus-stack",
                    version: KUBE_PROMETHEUS_STACK_VERSION,
                    repositoryOpts: { repo: KUBE_PROMETHEUS_STACK_REPO },
                    namespace: args.stackNamespace,
                    createNamespace: true,
                    atomic: true,
                    timeout: 900,
                    values: pulumi
                        .all([args.namespace, this.grafanaAdminPassword])
                        .apply(([ns, adminPassword]) =>
                            stackValues(c.prometheusRelease, c.dashboard, [args.stackNamespace, ns], adminPassword),
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
                            interval: c.scrapeInterval,
                            scrapeTimeout: c.scrapeTimeout,
                        },
                    ],
                },
            },
            crOpts,
        );

        const podMonitorName = `${name}-model-servers`;
        if (c.modelServers) {
            this.podMonitor = new k8s.apiextensions.CustomResource(
                podMonitorName,
                {
                    apiVersion: "monitoring.coreos.com/v1",
                    kind: "PodMonitor",
                    metadata: { name: podMonitorName, namespace: args.namespace, labels: promLabels },
                    spec: {
                        selector: MODEL_SERVER_SELECTOR,
                        namespaceSelector: { matchNames: [args.namespace] },
                        // Predictor pods carry no app.kubernetes.io labels; keep the InferenceService name.
                        podTargetLabels: ["serving.kserve.io/inferenceservice"],
                        podMetricsEndpoints: [
                            {
                                port: MLSERVER_PORTS.metrics.name,
                                path: "/metrics",
                                scheme: "http",
                                interval: c.scrapeInterval,
                                scrapeTimeout: c.scrapeTimeout,
                            },
                        ],
                    },
                },
                crOpts,
            );
        }

        const backups = (Object.keys(BACKUPS) as (keyof typeof BACKUPS)[]).flatMap((what): BackupScope[] => {
            const watch = args.backups[what];
            return watch ? [{ what, cronJob: watch.cronJobName, intervalSeconds: watch.intervalSeconds, runSeconds: watch.runSeconds }] : [];
        });
        const scope = pulumi
            .all([
                args.namespace,
                args.tracking.serviceName,
                args.tracking.selectorLabels,
                args.postgresStatefulSet,
                pulumi.all(args.volumeStatefulSets),
            ])
            .apply(
                ([namespace, trackingJob, trackingLabels, postgres, volumes]): AlertScope => ({
                    namespace,
                    trackingJob,
                    trackingPodSelector: Object.entries(trackingLabels).map(([k, v]) => `${k}=${v}`).join(","),
                    modelServerJob: c.modelServers ? `${namespace}/${podMonitorName}` : undefined,
                    postgresStatefulSet: postgres || undefined,
                    volumeStatefulSets: volumes.filter((v) => !!v),
                    backups,
                }),
            );
        this.ruleGroups = scope.apply((s) => alertRules(s, c.thresholds, c.runbookBaseUrl));
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
        if (c.dashboard.enabled) {
            this.dashboard = new k8s.core.v1.ConfigMap(
                `${name}-dashboard`,
                {
                    metadata: {
                        name: `${name}-dashboard`,
                        namespace: args.namespace,
                        labels: { ...labels(COMPONENT, APP, name), [c.dashboard.label]: c.dashboard.labelValue },
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
