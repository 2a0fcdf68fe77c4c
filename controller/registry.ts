// What the alias asks for, read from the MLflow registry with the platform's own REST client and
// mapping (components/mlflowRegistry.ts), plus the one write the controller makes to MLflow:
// registering itself as a webhook receiver.
import { readFileSync } from "fs";
import {
    getLoggedModel,
    getModelVersionByAlias,
    LoggedModelInfo,
    loggedModelId,
    mlflowRequest,
    RegistryConnection,
    RegistryError,
    storageUriForVersion,
} from "../shared/mlflowRegistry";
import type { Desired } from "./decide";

/** What the registry says about an alias: the storageUri of its version, or why there is nothing to serve. */
export type Resolution =
    | { readonly kind: "serve"; readonly version: string; readonly storageUri: string; readonly source: string }
    | Exclude<Desired, { kind: "serve" }>;

/** A value read from a file (a mounted Secret key), re-read at most every `ttlMs` so rotations apply. */
export class FileValue {
    private cached?: { value: string; at: number };
    constructor(
        readonly path: string,
        private readonly ttlMs = 30000,
        private readonly now: () => number = Date.now,
    ) {}
    get(): string {
        const t = this.now();
        if (this.cached && t - this.cached.at < this.ttlMs) return this.cached.value;
        // Secret files written by hand often end in a newline; kubelet-projected ones do not.
        const value = readFileSync(this.path, "utf8").replace(/\r?\n$/, "");
        this.cached = { value, at: t };
        return value;
    }
}

export interface RegistryClientOptions {
    readonly trackingUri: string;
    readonly timeoutMs: number;
    readonly username?: FileValue;
    readonly password?: FileValue;
    readonly artifactsDestination: string;
}

/** `Registered model alias <a> not found.` (HTTP 400) and `Registered Model with name=<m> not found` (404), as MLflow 3.17.2 answers. */
export function isAbsent(e: unknown): boolean {
    if (!(e instanceof RegistryError) || e.reason !== "http") return false;
    if (e.status === 404 && e.errorCode === "RESOURCE_DOES_NOT_EXIST") return true;
    return e.status === 400 && e.errorCode === "INVALID_PARAMETER_VALUE" && /alias .* not found/i.test(e.message);
}

export class RegistryClient {
    /** Logged models are immutable once registered: their location is looked up once. */
    private readonly loggedModels = new Map<string, LoggedModelInfo>();

    constructor(private readonly o: RegistryClientOptions) {}

    connection(): RegistryConnection {
        return {
            trackingUri: this.o.trackingUri,
            timeoutMs: this.o.timeoutMs,
            ...(this.o.username ? { username: this.o.username.get(), password: this.o.password?.get() } : {}),
        };
    }

    /**
     * The version `<name>@<alias>` points at and its s3:// storageUri. A missing alias or model, a
     * version that is not READY and a source KServe cannot read are answers (Desired), not errors;
     * an unreachable server or an unexpected HTTP status throws a RegistryError (retried with backoff).
     */
    async resolve(registeredModel: string, alias: string): Promise<Resolution> {
        const conn = this.connection();
        let version;
        try {
            version = await getModelVersionByAlias(conn, registeredModel, alias);
        } catch (e) {
            if (isAbsent(e)) return { kind: "absent", reason: `${registeredModel}@${alias} does not exist (${(e as Error).message})` };
            throw e;
        }
        if (version.status !== undefined && version.status !== "READY") {
            return { kind: "unservable", version: version.version, reason: `status ${version.status}` };
        }
        const id = loggedModelId(version.source);
        let logged: LoggedModelInfo | undefined;
        if (id !== undefined) {
            logged = this.loggedModels.get(id);
            if (!logged) {
                logged = await getLoggedModel(conn, id);
                if (logged.artifact_uri ?? logged.artifact_location) this.loggedModels.set(id, logged);
            }
        }
        let storageUri: string;
        try {
            storageUri = storageUriForVersion({ name: registeredModel, ...version }, this.o.artifactsDestination, logged);
        } catch (e) {
            return { kind: "unservable", version: version.version, reason: (e as Error).message };
        }
        return { kind: "serve", version: version.version, storageUri, source: version.source };
    }

    /**
     * Makes sure MLflow delivers alias events to `url`, signed with `secret`: updates the webhook named
     * `name` (url, events, secret, ACTIVE), or creates it. MLflow keeps secrets encrypted and never
     * returns them, so the secret is always re-sent; that also applies a rotated secret.
     */
    async ensureWebhook(p: { name: string; url: string; secret: string }): Promise<{ id: string; created: boolean }> {
        const body = {
            name: p.name,
            url: p.url,
            events: [
                { entity: "MODEL_VERSION_ALIAS", action: "CREATED" },
                { entity: "MODEL_VERSION_ALIAS", action: "DELETED" },
            ],
            description: "mlflow-platform deploy controller: follow registry aliases into serving",
            secret: p.secret,
            status: "ACTIVE",
        };
        let pageToken: string | undefined;
        do {
            const page = await this.call("GET", "webhooks", undefined, { max_results: "100", ...(pageToken ? { page_token: pageToken } : {}) });
            const found = (page.webhooks ?? []).find((w: any) => w.name === p.name);
            if (found) {
                await this.call("PATCH", `webhooks/${encodeURIComponent(found.webhook_id)}`, body);
                return { id: found.webhook_id, created: false };
            }
            pageToken = page.next_page_token || undefined;
        } while (pageToken);
        const created = await this.call("POST", "webhooks", body);
        return { id: created.webhook?.webhook_id, created: true };
    }

    private call(method: string, path: string, body?: unknown, query: Record<string, string> = {}): Promise<any> {
        return mlflowRequest(this.connection(), method, path, { query, body });
    }
}
