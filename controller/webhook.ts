// MLflow registry webhooks as MLflow 3.17.2 delivers them (mlflow/webhooks/delivery.py,
// mlflow/webhooks/constants.py, mlflow/webhooks/types.py):
//
//   POST <url>   Content-Type: application/json
//   X-MLflow-Delivery-Id: <uuid4>            (new per delivery; urllib3 retries resend the same one)
//   X-MLflow-Timestamp:   <unix seconds>
//   X-MLflow-Signature:   v1,<base64(HMAC-SHA256(secret, "<delivery id>.<timestamp>.<raw body>"))>
//                         (only when the webhook has a secret)
//   body: {"entity": "model_version_alias", "action": "created", "timestamp": "<ISO 8601>",
//          "data": {"name": "<registered model>", "alias": "<alias>", "version": "<n>"}}
//   (action "deleted" carries no version; `workspace` is added when MLflow workspaces are on)
//
// The signature is checked over the raw bytes, in constant time, with a timestamp window against
// replays, and each delivery id is accepted once.
import { createHmac, timingSafeEqual } from "crypto";

export const SIGNATURE_HEADER = "x-mlflow-signature";
export const TIMESTAMP_HEADER = "x-mlflow-timestamp";
export const DELIVERY_ID_HEADER = "x-mlflow-delivery-id";
export const SIGNATURE_VERSION = "v1";

/** The X-MLflow-Signature value MLflow sends for this delivery. */
export function signDelivery(secret: string, deliveryId: string, timestamp: string, body: Buffer | string): string {
    const mac = createHmac("sha256", Buffer.from(secret, "utf8"));
    mac.update(`${deliveryId}.${timestamp}.`, "utf8");
    mac.update(typeof body === "string" ? Buffer.from(body, "utf8") : body);
    return `${SIGNATURE_VERSION},${mac.digest("base64")}`;
}

export type Verification = { readonly ok: true; readonly deliveryId: string } | { readonly ok: false; readonly reason: string };

export interface VerifyParams {
    readonly secret: string;
    /** Header names lowercase (as node:http gives them). */
    readonly headers: Record<string, string | string[] | undefined>;
    readonly body: Buffer;
    readonly nowSeconds: number;
    readonly toleranceSeconds: number;
}

function header(h: VerifyParams["headers"], name: string): string | undefined {
    const v = h[name];
    return Array.isArray(v) ? v[0] : v;
}

/** Checks a delivery's signature and timestamp. Never throws. */
export function verifyDelivery(p: VerifyParams): Verification {
    if (!p.secret) return { ok: false, reason: "no webhook secret is configured" };
    const deliveryId = header(p.headers, DELIVERY_ID_HEADER);
    const timestamp = header(p.headers, TIMESTAMP_HEADER);
    const signature = header(p.headers, SIGNATURE_HEADER);
    if (!deliveryId || !timestamp || !signature) return { ok: false, reason: "missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature" };
    if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, reason: "X-MLflow-Timestamp is not unix seconds" };
    if (Math.abs(p.nowSeconds - Number(timestamp)) > p.toleranceSeconds) return { ok: false, reason: `timestamp outside the ${p.toleranceSeconds}s window` };
    const expected = Buffer.from(signDelivery(p.secret, deliveryId, timestamp, p.body).slice(SIGNATURE_VERSION.length + 1), "base64");
    // Standard Webhooks allows several space-separated signatures; MLflow sends one.
    for (const candidate of signature.split(" ")) {
        const [version, b64] = candidate.split(",", 2);
        if (version !== SIGNATURE_VERSION || !b64) continue;
        const given = Buffer.from(b64, "base64");
        if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true, deliveryId };
    }
    return { ok: false, reason: "signature mismatch" };
}

/** A registry alias event, the only kind the controller acts on. */
export interface AliasEvent {
    readonly action: "created" | "deleted";
    readonly name: string;
    readonly alias: string;
    readonly version?: string;
}

export type ParsedDelivery = { readonly kind: "alias"; readonly event: AliasEvent } | { readonly kind: "other"; readonly entity: string; readonly action: string };

/** Parses a verified body. Throws on a body that is not an MLflow delivery. */
export function parseDelivery(body: Buffer): ParsedDelivery {
    let payload: any;
    try {
        payload = JSON.parse(body.toString("utf8"));
    } catch {
        throw new Error("body is not JSON");
    }
    if (typeof payload !== "object" || payload === null || typeof payload.entity !== "string" || typeof payload.action !== "string") {
        throw new Error("body has no entity/action");
    }
    if (payload.entity !== "model_version_alias" || (payload.action !== "created" && payload.action !== "deleted")) {
        return { kind: "other", entity: payload.entity, action: payload.action };
    }
    const d = payload.data;
    if (typeof d !== "object" || d === null || typeof d.name !== "string" || typeof d.alias !== "string") throw new Error("alias event without data.name/data.alias");
    return {
        kind: "alias",
        event: { action: payload.action, name: d.name, alias: d.alias, ...(typeof d.version === "string" ? { version: d.version } : {}) },
    };
}

/** Remembers accepted delivery ids for the replay window, bounded in size. */
export class DeliveryLog {
    private readonly seen = new Map<string, number>();

    constructor(
        private readonly ttlSeconds: number,
        private readonly maxEntries = 10000,
    ) {}

    /** True the first time an id is offered within the window; false for a repeat. */
    firstSeen(id: string, nowSeconds: number): boolean {
        for (const [k, at] of this.seen) {
            if (nowSeconds - at <= this.ttlSeconds && this.seen.size < this.maxEntries) break;
            this.seen.delete(k);
        }
        if (this.seen.has(id)) return false;
        this.seen.set(id, nowSeconds);
        return true;
    }
}
