// The controller's two HTTP listeners:
// - webhook port: POST <webhook.path> receives MLflow registry webhooks (admitted from the tracking
//   server's pods only);
// - metrics port: GET /metrics (Prometheus), /healthz (liveness), /readyz (readiness).
import type { IncomingMessage, RequestListener, ServerResponse } from "http";
import type { Controller } from "./controller";
import type { Logger } from "./log";
import { CONTENT_TYPE, ControllerMetrics } from "./metrics";
import type { FileValue } from "./registry";
import { DeliveryLog, parseDelivery, verifyDelivery } from "./webhook";

/** MLflow's payloads are a few hundred bytes. */
export const MAX_WEBHOOK_BODY = 64 * 1024;

function send(res: ServerResponse, status: number, body: unknown, contentType = "application/json"): void {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
    res.end(text);
}

/** The body, or undefined when it exceeds `limit` (the rest is drained, up to 16 × limit, so a 413 can be sent). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        let size = 0;
        req.on("data", (c: Buffer) => {
            size += c.length;
            if (size <= limit) chunks.push(c);
            else if (size > 16 * limit) req.destroy();
        });
        req.on("end", () => resolve(size <= limit ? Buffer.concat(chunks) : undefined));
        req.on("error", reject);
        req.on("close", () => resolve(size <= limit ? Buffer.concat(chunks) : undefined));
    });
}

export interface WebhookHandlerDeps {
    readonly path: string;
    readonly secret: FileValue;
    readonly toleranceSeconds: number;
    readonly controller: Controller;
    readonly metrics: ControllerMetrics;
    readonly log: Logger;
    readonly now?: () => number;
    /** False once shutdown began: deliveries get 503 so MLflow retries (and polling covers the rest). */
    readonly accepting: () => boolean;
}

export function webhookHandler(d: WebhookHandlerDeps): RequestListener {
    const now = d.now ?? Date.now;
    const deliveries = new DeliveryLog(2 * d.toleranceSeconds);
    const count = (result: string) => d.metrics.webhooks.inc({ result });
    for (const r of ["accepted", "ignored", "duplicate", "rejected", "invalid"]) d.metrics.webhooks.init({ result: r });
    return (req, res) => {
        void (async () => {
            const path = (req.url ?? "").split("?")[0];
            if (path !== d.path) return send(res, 404, { error: "not found" });
            if (req.method !== "POST") {
                res.setHeader("allow", "POST");
                return send(res, 405, { error: "method not allowed" });
            }
            if (!d.accepting()) return send(res, 503, { error: "shutting down" });
            const body = await readBody(req, MAX_WEBHOOK_BODY);
            if (body === undefined) {
                count("invalid");
                res.setHeader("connection", "close");
                return send(res, 413, { error: "body too large" });
            }
            let secret: string;
            try {
                secret = d.secret.get();
            } catch (e) {
                d.log.error("cannot read the webhook secret", { file: d.secret.path, error: e });
                return send(res, 503, { error: "webhook secret unavailable" });
            }
            const nowSeconds = Math.floor(now() / 1000);
            const v = verifyDelivery({ secret, headers: req.headers, body, nowSeconds, toleranceSeconds: d.toleranceSeconds });
            if (!v.ok) {
                count("rejected");
                d.log.warn("webhook rejected", { reason: v.reason, remote: req.socket.remoteAddress, deliveryId: req.headers["x-mlflow-delivery-id"] });
                return send(res, 401, { error: "invalid signature" });
            }
            let parsed;
            try {
                parsed = parseDelivery(body);
            } catch (e) {
                count("invalid");
                d.log.warn("webhook body invalid", { deliveryId: v.deliveryId, error: e });
                return send(res, 400, { error: (e as Error).message });
            }
            if (!deliveries.firstSeen(v.deliveryId, nowSeconds)) {
                count("duplicate");
                return send(res, 200, { status: "duplicate" });
            }
            if (parsed.kind !== "alias") {
                count("ignored");
                return send(res, 200, { status: "ignored", event: `${parsed.entity}.${parsed.action}` });
            }
            const { event } = parsed;
            const models = d.controller.modelsFollowing(event.name, event.alias);
            if (models.length === 0) {
                count("ignored");
                d.log.debug("webhook for an alias nobody follows", { registeredModel: event.name, alias: event.alias });
                return send(res, 200, { status: "ignored" });
            }
            count("accepted");
            d.log.info("webhook accepted", { deliveryId: v.deliveryId, event: `model_version_alias.${event.action}`, registeredModel: event.name, alias: event.alias, version: event.version, models });
            // The payload only says that something changed: each pass re-reads the alias, so deliveries
            // that arrive out of order (MLflow sends them from a thread pool) cannot regress serving.
            for (const key of models) d.controller.trigger(key, `webhook ${v.deliveryId}`);
            return send(res, 202, { status: "accepted", models });
        })().catch((e) => {
            d.log.error("webhook handler failed", { error: e });
            if (!res.headersSent) send(res, 500, { error: "internal error" });
        });
    };
}

export interface OpsHandlerDeps {
    readonly controller: Controller;
    readonly metrics: ControllerMetrics;
    /** A pass running longer than this makes /healthz fail. */
    readonly maxPassMs: number;
    readonly listening: () => boolean;
}

export function opsHandler(d: OpsHandlerDeps): RequestListener {
    return (req, res) => {
        const path = (req.url ?? "").split("?")[0];
        if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, { error: "method not allowed" });
        if (path === "/metrics") return send(res, 200, d.metrics.registry.render(), CONTENT_TYPE);
        if (path === "/healthz") {
            const ok = d.controller.healthy(d.maxPassMs);
            return send(res, ok ? 200 : 503, { status: ok ? "ok" : "a reconcile pass is stuck" });
        }
        if (path === "/readyz") {
            const ok = d.listening() && d.controller.ready();
            return send(res, ok ? 200 : 503, { status: ok ? "ready" : "not ready" });
        }
        return send(res, 404, { error: "not found" });
    };
}
