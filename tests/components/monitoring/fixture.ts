// What the Monitoring specs share: the component built under mocks from its config slice, the scope the
// recorded alert tests are written for, and readers of captured exporter output.
import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { selectorLabels } from "../../../components/kube";
import { z } from "zod";
import { Monitoring, MonitoringArgs } from "../../../components/monitoring";
import { AlertScope, RuleGroup } from "../../../components/monitoring/alerts";
import { monitoringSchema } from "../../../components/monitoring/schema";
import { FIXTURES, out, settle } from "../../harness";

export const M = {
    ServiceMonitor: "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
    PodMonitor: "kubernetes:monitoring.coreos.com/v1:PodMonitor",
    PrometheusRule: "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
    Release: "kubernetes:helm.sh/v3:Release",
} as const;

export const MONITORING = path.join(FIXTURES, "monitoring");

/**
 * The backups of the default stack, as the backup components describe them (tests/components/monitoring/
 * index.spec.ts checks these against the real components): daily, a 10-minute start deadline and the
 * run deadlines (database 1 h, artifacts 6 h).
 */
export const BACKUP_WATCHES = {
    database: { cronJobName: "mlflow-database-backup", intervalSeconds: 86400, runSeconds: 600 + 3600 },
    artifacts: { cronJobName: "mlflow-artifact-backup", intervalSeconds: 86400, runSeconds: 600 + 6 * 3600 },
} as const;

/** The scope tests/fixtures/monitoring/rules.test.yaml is written for. */
export const FIXTURE_SCOPE: AlertScope = {
    namespace: "mlflow",
    trackingJob: "mlflow-tracking",
    trackingPodSelector: "app.kubernetes.io/name=tracking,app.kubernetes.io/instance=mlflow",
    modelServerJob: "mlflow/mlflow-model-servers",
    postgresStatefulSet: "mlflow-postgres",
    volumeStatefulSets: ["mlflow-postgres", "mlflow-minio"],
    backups: (["database", "artifacts"] as const).map((what) => {
        const { cronJobName, ...timing } = BACKUP_WATCHES[what];
        return { what, cronJob: cronJobName, ...timing };
    }),
};

/** The platform's default alert thresholds. */
export const THRESHOLDS = monitoringSchema.parse({}).thresholds;

export type Overrides = Partial<Omit<MonitoringArgs, "config">> & { config?: z.input<typeof monitoringSchema> };

export const fixture = ({ config, ...overrides }: Overrides = {}): MonitoringArgs => ({
    namespace: "ml",
    config: monitoringSchema.parse(config ?? {}),
    tracking: { serviceName: "mlflow-tracking", selectorLabels: selectorLabels("tracking", "mlflow") },
    postgresStatefulSet: "mlflow-postgres",
    volumeStatefulSets: ["mlflow-postgres", "mlflow-minio"],
    backups: BACKUP_WATCHES,
    stackNamespace: "monitoring",
    ...overrides,
});

export async function build(name: string, overrides: Overrides = {}) {
    const m = new Monitoring(name, fixture(overrides), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(...([m.serviceMonitor, m.podMonitor, m.prometheusRule, m.dashboard, m.stack].filter(Boolean) as pulumi.Resource[]));
    await out(m.ruleGroups);
    return m;
}

export const ruleList = (groups: RuleGroup[]) => groups.flatMap((g) => g.rules);

/** Metric names in a PromQL expression: every selector in this project is written `name{…}`. */
export function metricNames(expr: string): string[] {
    return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)].map((m) => m[1]);
}

/** Label names a PromQL expression matches on (`{a="x",b=~"y"}`) or aggregates by (`by (a, b)`). */
export function labelNames(expr: string): string[] {
    const matchers = [...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) => [...m[1].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)].map((x) => x[1]));
    const by = [...expr.matchAll(/\bby \(([^)]*)\)/g)].flatMap((m) => m[1].split(",").map((s) => s.trim()));
    return [...matchers, ...by];
}

/** metric name → label names, from a Prometheus text exposition captured from the real exporter. */
export function exposition(file: string): Map<string, Set<string>> {
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
export const TARGET_LABELS = new Set(["job", "namespace", "pod", "instance", "container", "endpoint", "service", "serving_kserve_io_inferenceservice"]);

