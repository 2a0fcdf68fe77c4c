// The `monitoring` config slice: prometheus-operator objects (the CRDs must exist, or set installStack).
import { z } from "zod";
import { conflict, dnsLabel, durationSeconds, promDuration, ratio } from "../fields";

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

export const monitoringSchema = z
    .strictObject({
        enabled: z.boolean().default(true).describe("ServiceMonitor, PodMonitor, PrometheusRule and Grafana dashboard (needs the prometheus-operator CRDs)"),
        scrapeInterval: promDuration("30s or 1m").default("30s").describe("how often Prometheus scrapes each target"),
        scrapeTimeout: promDuration("10s").default("10s").describe("scrape timeout, at most scrapeInterval"),
        prometheusRelease: dnsLabel("a Helm release name").default("kube-prometheus-stack").describe("the `release` label your Prometheus selects monitors and rules by"),
        modelServers: z.boolean().default(true).describe("a PodMonitor and alerts for the MLServer predictors (when serving is enabled)"),
        thresholds: z
            .strictObject({
                errorRatio: ratio.default(0.05).describe("share of tracking API requests answered 5xx"),
                latencyP95Seconds: z.number().gt(0, "must be above 0").max(10, "must be at most 10 (the histogram's top bucket)").default(2).describe("p95 tracking API latency, seconds"),
                volumeFreeRatio: ratio.default(0.1).describe("free share of a PVC below which it is nearly full"),
                modelErrorRatio: ratio.default(0.05).describe("share of failed inference calls per model"),
            })
            .prefault({})
            .describe("alert thresholds"),
        runbookBaseUrl: z
            .url({ protocol: /^https?$/, error: "must be an http(s) URL" })
            .refine((u) => !u.includes("#"), "must not have a fragment (the alert name is appended as one)")
            .optional()
            .describe("adds `runbook_url: <base>#<alert>` to every alert"),
        dashboard: z
            .strictObject({
                enabled: z.boolean().default(true).describe("a ConfigMap with the platform's Grafana dashboard"),
                label: z.string().regex(LABEL_KEY, "must be a label key").default("grafana_dashboard").describe("label key the Grafana sidecar watches"),
                labelValue: z.string().regex(LABEL_VALUE, "must be a label value").default("1").describe("its value"),
            })
            .prefault({})
            .describe("the Grafana dashboard"),
        installStack: z.boolean().default(false).describe("install the pinned kube-prometheus-stack chart into network.prometheusNamespace"),
    })
    .superRefine((m, ctx) => {
        if (durationSeconds(m.scrapeTimeout) > durationSeconds(m.scrapeInterval)) {
            conflict(ctx, m, {
                scrapeTimeout: `must not exceed monitoring.scrapeInterval ("${m.scrapeInterval}")`,
                scrapeInterval: `must be at least monitoring.scrapeTimeout ("${m.scrapeTimeout}")`,
            });
        }
        for (const key of ["scrapeInterval", "scrapeTimeout"] as const) {
            if (durationSeconds(m[key]) === 0) ctx.addIssue({ code: "custom", path: [key], message: "must not be zero" });
        }
        if (m.installStack && !m.enabled) {
            conflict(ctx, m, { installStack: "has no effect while monitoring.enabled is false: nothing would use the stack", enabled: "must be true when monitoring.installStack is" });
        }
        if (m.installStack && m.prometheusRelease.length > 53) {
            ctx.addIssue({ code: "custom", path: ["prometheusRelease"], message: "names the Helm release when installStack is true, so at most 53 characters" });
        }
    })
    .describe("Prometheus monitoring");

export type MonitoringConfig = z.infer<typeof monitoringSchema>;
