// A minimal Prometheus registry: counters and gauges with labels, rendered in the text exposition
// format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/). Gauges may be computed
// at scrape time (seconds since the last successful sync).

export const METRIC_PREFIX = "mlflow_deploy_controller_";
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;

function escapeLabel(v: string): string {
    return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelKey(labels: Labels): string {
    const keys = Object.keys(labels).sort();
    return keys.length === 0 ? "" : `{${keys.map((k) => `${k}="${escapeLabel(labels[k])}"`).join(",")}}`;
}

function formatValue(v: number): string {
    if (Number.isNaN(v)) return "NaN";
    if (v === Infinity) return "+Inf";
    if (v === -Infinity) return "-Inf";
    return String(v);
}

interface Family {
    readonly name: string;
    readonly help: string;
    readonly type: "counter" | "gauge";
    samples(): [string, number][];
}

export class Counter implements Family {
    readonly type = "counter" as const;
    private readonly values = new Map<string, number>();
    constructor(
        readonly name: string,
        readonly help: string,
    ) {}
    inc(labels: Labels = {}, by = 1): void {
        const k = labelKey(labels);
        this.values.set(k, (this.values.get(k) ?? 0) + by);
    }
    /** Makes a series visible at 0 before its first increment. */
    init(labels: Labels = {}): void {
        const k = labelKey(labels);
        if (!this.values.has(k)) this.values.set(k, 0);
    }
    get(labels: Labels = {}): number {
        return this.values.get(labelKey(labels)) ?? 0;
    }
    samples(): [string, number][] {
        return [...this.values.entries()];
    }
}

export class Gauge implements Family {
    readonly type = "gauge" as const;
    private readonly values = new Map<string, number | (() => number | undefined)>();
    constructor(
        readonly name: string,
        readonly help: string,
    ) {}
    /** A fixed value, or a function evaluated at each scrape (undefined: no sample). */
    set(labels: Labels, value: number | (() => number | undefined)): void {
        this.values.set(labelKey(labels), value);
    }
    get(labels: Labels = {}): number | undefined {
        const v = this.values.get(labelKey(labels));
        return typeof v === "function" ? v() : v;
    }
    samples(): [string, number][] {
        const out: [string, number][] = [];
        for (const [k, v] of this.values) {
            const value = typeof v === "function" ? v() : v;
            if (value !== undefined) out.push([k, value]);
        }
        return out;
    }
}

export class Registry {
    private readonly families: Family[] = [];
    counter(name: string, help: string): Counter {
        const c = new Counter(METRIC_PREFIX + name, help);
        this.families.push(c);
        return c;
    }
    gauge(name: string, help: string): Gauge {
        const g = new Gauge(METRIC_PREFIX + name, help);
        this.families.push(g);
        return g;
    }
    render(): string {
        const lines: string[] = [];
        for (const f of this.families) {
            lines.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${f.name} ${f.type}`);
            for (const [labels, value] of f.samples()) lines.push(`${f.name}${labels} ${formatValue(value)}`);
        }
        return lines.join("\n") + "\n";
    }
}

/** The controller's metrics. */
export function controllerMetrics() {
    const registry = new Registry();
    return {
        registry,
        reconciles: registry.counter("reconciles_total", "Reconcile passes per model, by result (success, error)."),
        writes: registry.counter("patches_total", "Writes to the serving target per model, by operation (create, patch)."),
        errors: registry.counter("errors_total", "Failed reconcile passes per model, by stage (registry, kubernetes, target)."),
        sinceSync: registry.gauge(
            "seconds_since_last_successful_sync",
            "Seconds since the model's last successful reconcile (registry read and serving checked); since start until the first one.",
        ),
        lastSync: registry.gauge("last_successful_sync_timestamp_seconds", "Unix time of the model's last successful reconcile; 0 before the first."),
        servedVersion: registry.gauge("served_version", "Registry version serving runs, as last observed or applied by the controller."),
        aliasMissing: registry.gauge("alias_missing", "1 while the followed alias (or its registered model) does not exist."),
        webhooks: registry.counter("webhook_deliveries_total", "Webhook deliveries by result (accepted, ignored, duplicate, rejected, invalid)."),
        webhookRegistered: registry.gauge("webhook_registered", "1 once this receiver is registered as an MLflow webhook."),
    };
}

export type ControllerMetrics = ReturnType<typeof controllerMetrics>;
