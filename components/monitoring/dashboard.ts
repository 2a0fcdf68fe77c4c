// The Grafana dashboard of the platform as a pure function: the same inputs always give the same JSON
// model (stable uid, title, panel ids and layout), so a redeploy never creates a second dashboard.
// Every expression uses only metric names listed in METRIC_SOURCES (alerts.ts), with the
// same label scopes as the alert rules.
import { createHash } from "crypto";

/** PromQL label matchers (without braces) that scope each exporter's series to this platform. */
export interface DashboardSelectors {
    /** Tracking server series, e.g. `namespace="mlflow",job="mlflow-tracking"`. */
    readonly tracking: string;
    /** MLServer predictor series, e.g. `job="mlflow/mlflow-model-servers"`; omit when not scraped. */
    readonly modelServers?: string;
    /** kube-state-metrics StatefulSet series of PostgreSQL; omit for an external database. */
    readonly postgres?: string;
    /** kubelet volume series of the platform's PVCs; omit when no volume is watched. */
    readonly volumes?: string;
}

export interface DashboardOptions {
    /** Dashboard uid: at most 40 characters of [A-Za-z0-9_-]. */
    readonly uid: string;
    readonly title: string;
    readonly selectors: DashboardSelectors;
}

interface Target {
    expr: string;
    legendFormat: string;
}

const DATASOURCE = { type: "prometheus", uid: "${datasource}" } as const;
const WIDTH = 24;

/** The Grafana JSON model (schemaVersion 39) of the platform dashboard. */
export function platformDashboard(opts: DashboardOptions): Record<string, unknown> {
    if (!/^[A-Za-z0-9_-]{1,40}$/.test(opts.uid)) throw new Error(`dashboard uid ${JSON.stringify(opts.uid)} must be 1-40 characters of [A-Za-z0-9_-]`);
    const s = opts.selectors;
    const layout = new Layout();

    layout.row("MLflow tracking server");
    layout.panel("stat", "Scrape targets up", 6, 8, [{ expr: `sum(up{${s.tracking}})`, legendFormat: "up" }], {
        unit: "none",
        description: "Tracking server pods whose /metrics Prometheus scraped successfully.",
    });
    layout.panel(
        "timeseries",
        "Request rate by status",
        9,
        8,
        [{ expr: `sum by (status) (rate(mlflow_http_request_total{${s.tracking}}[5m]))`, legendFormat: "{{status}}" }],
        { unit: "reqps", description: "Tracking and registry API requests per second (Flask routes; artifact transfers are served outside the exporter)." },
    );
    layout.panel(
        "timeseries",
        "5xx error ratio",
        9,
        8,
        [
            {
                expr: `sum(rate(mlflow_http_request_total{${s.tracking},status=~"5.."}[5m])) / sum(rate(mlflow_http_request_total{${s.tracking}}[5m]))`,
                legendFormat: "5xx / all",
            },
        ],
        { unit: "percentunit", description: "Share of API requests answered with a 5xx status." },
    );
    layout.panel(
        "timeseries",
        "Latency p50 / p95 / p99",
        12,
        8,
        [0.5, 0.95, 0.99].map((q) => ({
            expr: `histogram_quantile(${q}, sum by (le) (rate(mlflow_http_request_duration_seconds_bucket{${s.tracking}}[5m])))`,
            legendFormat: `p${Math.round(q * 100)}`,
        })),
        { unit: "s", description: "API request latency from the exporter's histogram (buckets 5 ms … 10 s; above 10 s shows as 10 s)." },
    );
    layout.panel(
        "timeseries",
        "Writes: runs created, metrics and params logged",
        12,
        8,
        [{ expr: `sum by (method) (rate(mlflow_http_request_total{${s.tracking},method=~"POST|PATCH|DELETE"}[5m]))`, legendFormat: "{{method}}" }],
        {
            unit: "reqps",
            description:
                "Write requests per second: runs/create, runs/log-batch, runs/log-metric, log-parameter, set-tag and model registry " +
                "writes are all POSTs. MLflow groups its exporter's series by MLflow version, not by path, so per-endpoint rates are not available.",
        },
    );

    if (s.modelServers) {
        layout.row("Model servers (MLServer)");
        layout.panel(
            "timeseries",
            "Inference throughput",
            8,
            8,
            [
                { expr: `sum by (namespace, model) (rate(model_infer_request_success_total{${s.modelServers}}[5m]))`, legendFormat: "{{namespace}}/{{model}} ok" },
                { expr: `sum by (namespace, model) (rate(model_infer_request_failure_total{${s.modelServers}}[5m]))`, legendFormat: "{{namespace}}/{{model}} failed" },
            ],
            { unit: "reqps", description: "Inference requests per second per model (REST and gRPC)." },
        );
        layout.panel(
            "timeseries",
            "Inference latency p50 / p95 / p99 (REST)",
            8,
            8,
            [0.5, 0.95, 0.99].map((q) => ({
                expr: `histogram_quantile(${q}, sum by (le) (rate(rest_server_request_duration_seconds_bucket{${s.modelServers},path=~"/v2/models/.+/infer"}[5m])))`,
                legendFormat: `p${Math.round(q * 100)}`,
            })),
            { unit: "s", description: "Latency of POST /v2/models/…/infer as MLServer's REST middleware measures it." },
        );
        layout.panel(
            "timeseries",
            "Mean inference time per model",
            8,
            8,
            [
                {
                    expr: `sum by (namespace, model) (rate(model_infer_request_duration_sum{${s.modelServers}}[5m])) / sum by (namespace, model) (rate(model_infer_request_duration_count{${s.modelServers}}[5m]))`,
                    legendFormat: "{{namespace}}/{{model}}",
                },
            ],
            { unit: "s", description: "Time spent in the model's predict, from MLServer's per-model summary (count and sum only)." },
        );
    }

    if (s.postgres || s.volumes) {
        layout.row("Storage");
        if (s.postgres) {
            layout.panel(
                "timeseries",
                "PostgreSQL ready replicas",
                12,
                8,
                [
                    { expr: `max(kube_statefulset_status_replicas_ready{${s.postgres}})`, legendFormat: "ready" },
                    { expr: `max(kube_statefulset_replicas{${s.postgres}})`, legendFormat: "desired" },
                ],
                { unit: "none", description: "From kube-state-metrics." },
            );
        }
        if (s.volumes) {
            layout.panel(
                "timeseries",
                "Volume free space",
                s.postgres ? 12 : 24,
                8,
                [
                    {
                        expr: `max by (persistentvolumeclaim) (kubelet_volume_stats_available_bytes{${s.volumes}}) / max by (persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{${s.volumes}})`,
                        legendFormat: "{{persistentvolumeclaim}}",
                    },
                ],
                { unit: "percentunit", description: "Free share of each platform PVC, from the kubelet's volume stats." },
            );
        }
    }

    return {
        uid: opts.uid,
        title: opts.title,
        description: "MLflow tracking server, model servers and their storage (generated by mlflow-platform; edits in Grafana are overwritten).",
        tags: ["mlflow", "mlflow-platform"],
        editable: false,
        graphTooltip: 1,
        refresh: "1m",
        schemaVersion: 39,
        version: 1,
        time: { from: "now-6h", to: "now" },
        timezone: "browser",
        annotations: { list: [] },
        templating: {
            list: [
                {
                    name: "datasource",
                    label: "Data source",
                    type: "datasource",
                    query: "prometheus",
                    current: {},
                    hide: 0,
                    refresh: 1,
                    options: [],
                },
            ],
        },
        panels: layout.panels,
    };
}

/** Places panels left to right in rows of 24 columns; ids are assigned in order, so they are stable. */
class Layout {
    readonly panels: Record<string, unknown>[] = [];
    private x = 0;
    private y = 0;
    private rowHeight = 0;

    row(title: string): void {
        this.newLine();
        this.panels.push({ id: this.panels.length + 1, type: "row", title, collapsed: false, gridPos: { x: 0, y: this.y, w: WIDTH, h: 1 }, panels: [] });
        this.y += 1;
    }

    panel(type: "timeseries" | "stat", title: string, w: number, h: number, targets: Target[], field: { unit: string; description: string }): void {
        if (this.x + w > WIDTH) this.newLine();
        this.panels.push({
            id: this.panels.length + 1,
            type,
            title,
            description: field.description,
            datasource: DATASOURCE,
            gridPos: { x: this.x, y: this.y, w, h },
            fieldConfig: { defaults: { unit: field.unit, ...(field.unit === "percentunit" ? { min: 0, max: 1 } : {}) }, overrides: [] },
            options: type === "stat" ? { reduceOptions: { calcs: ["lastNotNull"] } } : { legend: { displayMode: "list", placement: "bottom" } },
            targets: targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), datasource: DATASOURCE, expr: t.expr, legendFormat: t.legendFormat })),
        });
        this.x += w;
        this.rowHeight = Math.max(this.rowHeight, h);
    }

    private newLine(): void {
        this.y += this.rowHeight;
        this.x = 0;
        this.rowHeight = 0;
    }
}

/** Dashboard uid: readable, one per platform namespace, within Grafana's 40 characters. */
export function dashboardUid(namespace: string): string {
    const uid = `mlflow-${namespace}`;
    return uid.length <= 40 ? uid : `mlflow-${namespace.slice(0, 24)}-${createHash("sha256").update(namespace).digest("hex").slice(0, 8)}`;
}
