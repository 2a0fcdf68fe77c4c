// The platform's Prometheus alerts as pure functions of what they are scoped to: the same scope always
// gives the same rule groups, and every metric name comes from METRIC_SOURCES.
import type { MonitoringConfig } from "./schema";

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
    kube_job_owner:
        "kube-state-metrics Job collector: one series per ownerReference, labels namespace, job_name, owner_kind, owner_name, owner_is_controller (a CronJob's Jobs: owner_kind CronJob, owner_name the CronJob)",
    kube_job_created: "kube-state-metrics Job collector: metadata.creationTimestamp, Unix seconds, labels namespace, job_name",
    kube_job_status_failed:
        "kube-state-metrics Job collector: status.failed (pods that failed, and pods the Job controller deleted unfinished when it gave up), labels namespace, job_name, " +
        "reason (BackoffLimitExceeded, DeadlineExceeded, Evicted once the Job has a Failed condition, else empty)",
    kube_cronjob_created: "kube-state-metrics CronJob collector: metadata.creationTimestamp, Unix seconds, labels namespace, cronjob",
    kube_cronjob_status_last_successful_time:
        "kube-state-metrics CronJob collector (ALPHA): status.lastSuccessfulTime, when a Job of the CronJob last completed, Unix seconds, labels namespace, cronjob; absent until one has",
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
    /** `backup` tells a backup's alerts from the other backup's (promtool refuses two rules of one name and labels). */
    labels: { severity: "critical" | "warning"; backup?: keyof typeof BACKUPS };
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
    /** The backup CronJobs of the stack, only those enabled. */
    backups: BackupScope[];
}

/** A backup CronJob the alerts watch (components/kube.ts ScheduledJobWatch). */
export interface BackupScope {
    what: keyof typeof BACKUPS;
    cronJob: string;
    /** The longest time between two of its scheduled runs, seconds. */
    intervalSeconds: number;
    /** From a scheduled time, the longest a run may take to start and finish, seconds. */
    runSeconds: number;
}

/** What each backup is called in the alerts, and where its runbook looks. */
export const BACKUPS = {
    database: {
        title: "Database backup",
        causes: "PostgreSQL unreachable or its password Secret changed, the backup bucket missing or its user's keys wrong, a dump refused as not custom-format (PGDMP), the run deadline reached",
    },
    artifacts: {
        title: "Artifact backup",
        causes: "objects missing from the copy after the mirror (the backup user cannot list or write <backupBucket>/artifacts/), the object store unreachable, the run deadline reached",
    },
} as const;

/**
 * How many scheduled runs in a row may pass without a success before MlflowBackupMissing fires. While
 * every run succeeds, the last success is at most one interval plus a run's start and run deadlines
 * old; two intervals plus those deadlines means the next run has not succeeded either (a daily dump
 * with its 1 h deadline: 2 d 1 h 10 m). MlflowBackupFailed names the first failed run long before.
 */
export const BACKUP_MISSED_RUNS = 2;

/** Seconds without a success after which a backup is missing. */
export const backupMissingAfterSeconds = (b: Pick<BackupScope, "intervalSeconds" | "runSeconds">): number => BACKUP_MISSED_RUNS * b.intervalSeconds + b.runSeconds;

export type AlertThresholds = MonitoringConfig["thresholds"];

/** The InferenceService name on model-server series: podTargetLabels copies the pod label, sanitized. */
export const ISVC_LABEL = "serving_kserve_io_inferenceservice";

/** A PromQL string literal. */
const q = (s: string): string => JSON.stringify(s);
const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** `3d 1h 10m`: a whole number of seconds for a person. */
export function humanSeconds(seconds: number): string {
    const parts: string[] = [];
    let rest = Math.round(seconds);
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
        if (rest >= size) parts.push(`${Math.floor(rest / size)}${unit}`);
        rest %= size;
    }
    return parts.join(" ") || "0s";
}

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
export function alertRules(s: AlertScope, t: AlertThresholds, runbookBaseUrl?: string): RuleGroup[] {
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

    const backups = s.backups.flatMap((b) => backupRules(ns, b));

    return [
        { name: "mlflow-platform.tracking", rules: tracking },
        { name: "mlflow-platform.storage", rules: storage },
        { name: "mlflow-platform.model-serving", rules: serving },
        { name: "mlflow-platform.backups", rules: backups },
    ]
        .filter((g) => g.rules.length > 0)
        .map((g) => ({ ...g, rules: g.rules.map(withRunbook) }));
}

/**
 * A backup CronJob's two alerts, from kube-state-metrics. MlflowBackupFailed: a Job of the CronJob,
 * created after the CronJob's last success, has failed pods. The pods restart their containers in place
 * (restartPolicy OnFailure), so a pod fails when the Job gives up (retries or run deadline spent) or is
 * lost (evicted, its node gone); a Job that then succeeds moves the last success past it and the alert
 * resolves, and so does the next good run: failed Jobs stay in the CronJob's history, but no longer
 * count. MlflowBackupMissing: the last success (or the CronJob's creation, when none has succeeded) is
 * older than backupMissingAfterSeconds: runs that fail, or never start (suspended, start deadline missed).
 */
function backupRules(ns: string, b: BackupScope): AlertRule[] {
    const { title, causes } = BACKUPS[b.what];
    const cronJob = `namespace=${q(ns)},cronjob=${q(b.cronJob)}`;
    const owner = `namespace=${q(ns)},owner_kind="CronJob",owner_name=${q(b.cronJob)}`;
    // When the backup last succeeded, or the CronJob was made if it never has: labels namespace, cronjob.
    const lastSuccess =
        `(max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{${cronJob}})` +
        ` or max by (namespace, cronjob) (kube_cronjob_created{${cronJob}}))`;
    // The CronJob's Jobs with failed pods, valued by their creation time: labels namespace, job_name, cronjob.
    const failedJobs =
        `(max by (namespace, job_name) (kube_job_created{namespace=${q(ns)}})` +
        ` and on (namespace, job_name) max by (namespace, job_name) (kube_job_status_failed{namespace=${q(ns)}}) > 0)` +
        ` * on (namespace, job_name) group_left (cronjob)` +
        ` max by (namespace, job_name, cronjob) (label_replace(kube_job_owner{${owner}}, "cronjob", "$1", "owner_name", "(.+)"))`;
    const missingAfter = backupMissingAfterSeconds(b);
    const rerun = `kubectl -n ${ns} create job --from=cronjob/${b.cronJob} ${b.cronJob}-manual-$(date +%s)`;
    return [
        {
            alert: "MlflowBackupFailed",
            expr: `${failedJobs} > on (namespace, cronjob) group_left () ${lastSuccess}`,
            for: "5m",
            labels: { severity: "warning", backup: b.what },
            annotations: {
                summary: `${title} {{ $labels.namespace }}/{{ $labels.cronjob }} failed`,
                description: `Job {{ $labels.job_name }}, created {{ $value | humanizeTimestamp }}, has failed pods and no run has succeeded since: the newest backup is older than it should be.`,
                runbook: `kubectl -n ${ns} describe job {{ $labels.job_name }}; kubectl -n ${ns} logs job/{{ $labels.job_name }} --all-containers. Usual causes: ${causes}. Once fixed, run it now: ${rerun}`,
            },
        },
        {
            alert: "MlflowBackupMissing",
            expr: `time() - ${lastSuccess} > ${missingAfter}`,
            for: "10m",
            labels: { severity: "critical", backup: b.what },
            annotations: {
                summary: `${title} {{ $labels.namespace }}/{{ $labels.cronjob }} has not succeeded for {{ $value | humanizeDuration }}`,
                description: `No run of ${b.cronJob} has succeeded for {{ $value | humanizeDuration }} (since it was created, if none ever has); its schedule allows ${humanSeconds(missingAfter)} (${BACKUP_MISSED_RUNS} × ${humanSeconds(b.intervalSeconds)} between runs + ${humanSeconds(b.runSeconds)} to start and finish one).`,
                runbook: `kubectl -n ${ns} get cronjob ${b.cronJob} (is it suspended? when was it last scheduled?); kubectl -n ${ns} get jobs --sort-by=.metadata.creationTimestamp | grep ${b.cronJob}; a failed run also fires MlflowBackupFailed. Once fixed, run it now: ${rerun}`,
            },
        },
    ];
}
