// A small client for the real Kubernetes API server the local tier starts (scripts/local/controlPlane.ts):
// HTTPS to 127.0.0.1 with the cluster's CA and a bearer token, discovery of each kind's resource name, and
// server-side apply with the options the Pulumi provider sends. Kept to what the tier needs; the
// deploy controller has its own client (controller/).
import * as fs from "fs";
import * as https from "https";
import { parse } from "yaml";
import { KubeObject } from "../lib/manifests";

export interface KubeAccess {
    /** `https://127.0.0.1:<port>` */
    server: string;
    /** PEM of the cluster CA. */
    ca: string;
    token: string;
}

export interface KubeResponse {
    status: number;
    body: any;
    /** `Warning` headers (PodSecurity, deprecations, unknown fields under Warn validation). */
    warnings: string[];
}

/** An answer other than 2xx: its status and the server's own message. */
export class KubeError extends Error {
    constructor(
        readonly status: number,
        readonly serverMessage: string,
        readonly reason?: string,
    ) {
        super(`HTTP ${status}${reason ? ` ${reason}` : ""}: ${serverMessage}`);
    }
}

interface ApiResource {
    name: string;
    namespaced: boolean;
    kind: string;
}

export interface ApplyOptions {
    fieldManager: string;
    dryRun?: boolean;
    force?: boolean;
}

export class KubeClient {
    private readonly agent: https.Agent;
    private readonly resources = new Map<string, ApiResource[]>();

    constructor(readonly access: KubeAccess) {
        this.agent = new https.Agent({ ca: access.ca, keepAlive: true, maxSockets: 4 });
    }

    close(): void {
        this.agent.destroy();
    }

    request(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<KubeResponse> {
        return this.send(method, path, body, contentType, false);
    }

    private send(method: string, path: string, body: unknown, contentType: string, retried: boolean): Promise<KubeResponse> {
        const url = new URL(path, this.access.server);
        const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
        return new Promise((resolve, reject) => {
            const req = https.request(
                url,
                {
                    method,
                    agent: this.agent,
                    headers: {
                        authorization: `Bearer ${this.access.token}`,
                        accept: "application/json",
                        ...(payload !== undefined ? { "content-type": contentType, "content-length": Buffer.byteLength(payload) } : {}),
                    },
                    timeout: 60_000,
                },
                (res) => {
                    const chunks: Buffer[] = [];
                    res.on("data", (c) => chunks.push(c));
                    res.on("end", () => {
                        const text = Buffer.concat(chunks).toString("utf8");
                        let parsed: any = text;
                        try {
                            parsed = text ? JSON.parse(text) : undefined;
                        } catch {
                            /* not JSON (e.g. /readyz) */
                        }
                        const w = res.headers.warning;
                        const warnings = (Array.isArray(w) ? w : w ? [w] : []).map((x) => x.replace(/^299 - "?|"$/g, ""));
                        resolve({ status: res.statusCode ?? 0, body: parsed, warnings });
                    });
                },
            );
            req.on("timeout", () => req.destroy(new Error(`${method} ${url.pathname}: no answer in 60 s`)));
            req.on("error", (e: NodeJS.ErrnoException) => {
                // A kept-alive socket the server closed as the request went out: it never reached the
                // server, so it is sent again once, on a new socket (the pattern Node's http docs give).
                if (!retried && req.reusedSocket && (e.code === "ECONNRESET" || e.message === "socket hang up")) {
                    this.send(method, path, body, contentType, true).then(resolve, reject);
                } else reject(e);
            });
            if (payload !== undefined) req.write(payload);
            req.end();
        });
    }

    /** Like request, but throws a KubeError carrying the server's message on anything but 2xx. */
    async call(method: string, path: string, body?: unknown, contentType?: string): Promise<KubeResponse> {
        const r = await this.request(method, path, body, contentType);
        if (r.status < 200 || r.status > 299) {
            const msg = typeof r.body === "object" && r.body?.message ? r.body.message : String(r.body ?? "").trim();
            throw new KubeError(r.status, msg, r.body?.reason);
        }
        return r;
    }

    /** The resource of a kind (plural name, namespaced), from discovery; re-read after a miss (a CRD just added). */
    async resourceFor(apiVersion: string, kind: string): Promise<ApiResource> {
        for (let fresh = false; ; fresh = true) {
            if (fresh || !this.resources.has(apiVersion)) {
                const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
                const r = await this.request("GET", base);
                this.resources.set(apiVersion, r.status === 200 ? (r.body.resources as ApiResource[]).filter((x) => !x.name.includes("/")) : []);
            }
            const found = this.resources.get(apiVersion)!.find((x) => x.kind === kind);
            if (found) return found;
            if (fresh) throw new KubeError(404, `the server has no resource for kind ${kind} in ${apiVersion} (is its CRD installed?)`);
        }
    }

    /** The API path of an object (its collection's path when `name` is left out). */
    async pathOf(o: { apiVersion: string; kind: string; metadata: { name?: string; namespace?: string } }, withName = true): Promise<string> {
        const res = await this.resourceFor(o.apiVersion, o.kind);
        const base = o.apiVersion.includes("/") ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
        const ns = res.namespaced ? `/namespaces/${encodeURIComponent(o.metadata.namespace ?? "default")}` : "";
        return `${base}${ns}/${res.name}${withName && o.metadata.name ? `/${encodeURIComponent(o.metadata.name)}` : ""}`;
    }

    async exists(o: KubeObject): Promise<boolean> {
        const r = await this.request("GET", await this.pathOf(o));
        return r.status === 200;
    }

    /**
     * Server-side apply with strict field validation: an unknown or duplicate field is refused, not
     * dropped with a warning.
     */
    async apply(o: KubeObject, options: ApplyOptions): Promise<KubeResponse> {
        const q = new URLSearchParams({ fieldManager: options.fieldManager, fieldValidation: "Strict" });
        if (options.force) q.set("force", "true");
        if (options.dryRun) q.set("dryRun", "All");
        return this.call("PATCH", `${await this.pathOf(o)}?${q}`, o, "application/apply-patch+yaml");
    }
}

/**
 * Server, CA and token of a kubeconfig's current context (the kind `npm run local` writes). Client
 * certificates and exec plugins are not supported here: the error says so.
 */
export function readKubeconfig(file: string): KubeAccess {
    const cfg = parse(fs.readFileSync(file, "utf8"));
    const ctx = (cfg.contexts ?? []).find((c: any) => c.name === cfg["current-context"])?.context;
    if (!ctx) throw new Error(`${file}: no current-context`);
    const cluster = (cfg.clusters ?? []).find((c: any) => c.name === ctx.cluster)?.cluster;
    const user = (cfg.users ?? []).find((u: any) => u.name === ctx.user)?.user;
    if (!cluster?.server) throw new Error(`${file}: context ${cfg["current-context"]} has no cluster server`);
    const ca = cluster["certificate-authority-data"]
        ? Buffer.from(cluster["certificate-authority-data"], "base64").toString("utf8")
        : cluster["certificate-authority"]
          ? fs.readFileSync(cluster["certificate-authority"], "utf8")
          : undefined;
    if (!ca) throw new Error(`${file}: cluster ${ctx.cluster} has no certificate-authority(-data)`);
    if (!user?.token) throw new Error(`${file}: user ${ctx.user} has no token (only token users are supported here)`);
    return { server: cluster.server, ca, token: user.token };
}
