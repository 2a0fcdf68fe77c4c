// The MLflow model registry seen from the deploy side: pure mapping of a model version to the s3://
// location KServe's storage initializer downloads, and a small REST client that resolves an alias at
// `pulumi up`. Importing this module creates nothing and contacts nothing.
//
// Response shapes are those of MLflow 3.17.2 (recorded in tests/fixtures/serving/):
//   GET /api/2.0/mlflow/registered-models/alias?name=&alias= → {model_version: {version, source, run_id, status, …}}
//   GET /api/2.0/mlflow/logged-models/<model_id>             → {model: {info: {artifact_uri, experiment_id, …}}}

/** A registered model version as the registry returns it (the fields this module reads). */
export interface ModelVersionInfo {
    readonly name?: string;
    readonly version: string;
    /** `models:/m-<id>` (MLflow 3 logged model), `mlflow-artifacts:/<path>` (proxied artifacts) or `s3://…`. */
    readonly source: string;
    readonly run_id?: string;
    /** `READY`, `PENDING_REGISTRATION` or `FAILED_REGISTRATION`. */
    readonly status?: string;
}

/** A logged model's `info` (MLflow 3). The REST API calls the location `artifact_uri`, the Python entity `artifact_location`. */
export interface LoggedModelInfo {
    readonly model_id?: string;
    readonly experiment_id?: string;
    readonly artifact_uri?: string;
    readonly artifact_location?: string;
}

/** An alias resolved to the artifacts KServe serves. */
export interface ResolvedModel {
    readonly registeredModel: string;
    readonly alias: string;
    readonly version: string;
    /** The version's `source` as the registry recorded it. */
    readonly source: string;
    /** `s3://<bucket>/<path>`: the directory holding `MLmodel`. */
    readonly storageUri: string;
}

const S3_URI = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(\/.*)?$/;
const LOGGED_MODEL_SOURCE = /^models:\/(m-[A-Za-z0-9]+)\/?$/;

/** Splits `s3://bucket[/prefix]` (the tracking server's `--artifacts-destination`). */
export function parseS3Uri(uri: string): { bucket: string; key: string } {
    const m = S3_URI.exec(uri);
    if (!m) throw new Error(`"${uri}" is not an s3://<bucket>[/<key>] URI`);
    return { bucket: m[1], key: (m[2] ?? "").replace(/^\/+|\/+$/g, "") };
}

/** The `m-<id>` of a `models:/m-<id>` source, or undefined for any other source. */
export function loggedModelId(source: string): string | undefined {
    return LOGGED_MODEL_SOURCE.exec(source)?.[1];
}

/**
 * Maps an artifact URI as the registry records it to the s3:// URI KServe can read.
 * - `s3://bucket/key` is returned as is (normalised: no trailing slash).
 * - `mlflow-artifacts:/<path>` and `mlflow-artifacts://<host>/<path>` (proxied artifacts, which KServe
 *   cannot read) become `<artifactsDestination>/<path>`, the place the tracking server stored them.
 * Anything else (file:, runs:/, models:/<name>/…, http…) is refused with an Error.
 */
export function artifactUriToS3(uri: string, artifactsDestination: string): string {
    if (uri.startsWith("s3://")) {
        const { bucket, key } = parseS3Uri(uri);
        return key ? `s3://${bucket}/${checkedPath(key, uri)}` : `s3://${bucket}`;
    }
    const proxied = /^mlflow-artifacts:(?:\/\/[^/]*)?\/+(.*)$/.exec(uri);
    if (proxied) {
        const path = checkedPath(proxied[1].replace(/\/+$/, ""), uri);
        if (!path) throw new Error(`"${uri}" names the artifact root itself, not a model directory`);
        const { bucket, key } = parseS3Uri(artifactsDestination);
        return `s3://${bucket}/${key ? `${key}/` : ""}${path}`;
    }
    throw new Error(`"${uri}" cannot be served: only s3:// and mlflow-artifacts:/ locations map to an s3:// storageUri`);
}

function checkedPath(path: string, uri: string): string {
    const segments = path.split("/").filter((s) => s.length > 0);
    if (segments.some((s) => s === "." || s === "..")) throw new Error(`"${uri}" contains a relative path segment`);
    return segments.join("/");
}

/**
 * The s3:// storageUri of a model version.
 * - source `models:/m-<id>` (MLflow 3): the logged model's `artifact_uri`
 *   (`<experiment_id>/models/<model_id>/artifacts` under the artifact root), which must be given;
 * - source `mlflow-artifacts:/…` or `s3://…`: mapped by `artifactUriToS3`.
 * A version that is not `READY` is refused.
 */
export function storageUriForVersion(version: ModelVersionInfo, artifactsDestination: string, loggedModel?: LoggedModelInfo): string {
    const label = `version ${version.version}${version.name ? ` of ${version.name}` : ""}`;
    if (version.status !== undefined && version.status !== "READY") {
        throw new Error(`model ${label} is ${version.status}, not READY`);
    }
    const id = loggedModelId(version.source);
    if (id !== undefined) {
        const location = loggedModel?.artifact_uri ?? loggedModel?.artifact_location;
        if (!location) throw new Error(`model ${label} has source ${version.source}: the logged model's artifact location is needed`);
        if (loggedModel?.model_id !== undefined && loggedModel.model_id !== id) {
            throw new Error(`model ${label}: logged model ${loggedModel.model_id} does not match source ${version.source}`);
        }
        return artifactUriToS3(location, artifactsDestination);
    }
    if (version.source.startsWith("models:/")) {
        throw new Error(`model ${label} has source ${version.source}, which names another registry entry, not a logged model`);
    }
    try {
        return artifactUriToS3(version.source, artifactsDestination);
    } catch (e) {
        throw new Error(`model ${label}: ${(e as Error).message}`);
    }
}

/** How to reach the tracking server. */
export interface RegistryConnection {
    /** Base URL of the tracking server, e.g. `https://mlflow.example.com` (a path prefix is kept). */
    readonly trackingUri: string;
    /** Basic-auth user (ingress or MLflow auth). */
    readonly username?: string;
    readonly password?: string;
    /** Per request, in milliseconds. */
    readonly timeoutMs: number;
}

/** Why a registry call failed: the server could not be reached, or it answered with an error. */
export class RegistryError extends Error {
    constructor(
        message: string,
        readonly reason: "unreachable" | "http",
        readonly status?: number,
        readonly errorCode?: string,
    ) {
        super(message);
        this.name = "RegistryError";
    }
}

/**
 * One call to the tracking server's REST API (`<trackingUri>/api/2.0/mlflow/<path>`), with Basic auth when
 * a user or password is set, no redirects and the connection's timeout. Returns the parsed JSON body;
 * throws a RegistryError when the server cannot be reached, answers an error status or answers no JSON.
 */
export async function mlflowRequest(
    conn: RegistryConnection,
    method: string,
    path: string,
    o: { query?: Record<string, string>; body?: unknown } = {},
): Promise<any> {
    const base = conn.trackingUri.replace(/\/+$/, "");
    const url = new URL(`${base}/api/2.0/mlflow/${path}`);
    for (const [k, v] of Object.entries(o.query ?? {})) url.searchParams.set(k, v);
    const headers: Record<string, string> = { accept: "application/json" };
    if (o.body !== undefined) headers["content-type"] = "application/json";
    if (conn.username !== undefined || conn.password !== undefined) {
        headers.authorization = `Basic ${Buffer.from(`${conn.username ?? ""}:${conn.password ?? ""}`).toString("base64")}`;
    }
    const where = `${url.origin}${url.pathname}`; // never the credentials, never the query
    const label = `MLflow ${method === "GET" ? "at" : method} ${where}`;
    let res: Response;
    let text: string;
    try {
        res = await fetch(url, {
            method,
            headers,
            body: o.body === undefined ? undefined : JSON.stringify(o.body),
            signal: AbortSignal.timeout(conn.timeoutMs),
            redirect: "error",
        });
        text = await res.text();
    } catch (e) {
        const err = e as Error & { cause?: { code?: string; message?: string } };
        const cause = err.name === "TimeoutError" ? `no answer within ${conn.timeoutMs} ms` : (err.cause?.code ?? err.cause?.message ?? err.message);
        throw new RegistryError(`MLflow at ${where} is unreachable (${cause})`, "unreachable");
    }
    let body: any;
    try {
        body = text ? JSON.parse(text) : {};
    } catch {
        body = undefined;
    }
    if (!res.ok) {
        const detail = body?.message ?? `HTTP ${res.status}`;
        throw new RegistryError(`${label} answered ${res.status}: ${detail}`, "http", res.status, body?.error_code);
    }
    if (body === undefined) throw new RegistryError(`${label} answered ${res.status} with a body that is not JSON`, "http", res.status);
    return body;
}

function getJson(conn: RegistryConnection, path: string, query: Record<string, string> = {}): Promise<any> {
    return mlflowRequest(conn, "GET", path, { query });
}

/** GET registered-models/alias: the version an alias points at. */
export async function getModelVersionByAlias(conn: RegistryConnection, name: string, alias: string): Promise<ModelVersionInfo> {
    const body = await getJson(conn, "registered-models/alias", { name, alias });
    const mv = body.model_version;
    if (!mv || typeof mv.version !== "string" || typeof mv.source !== "string") {
        throw new RegistryError(`MLflow returned no model version for ${name}@${alias}`, "http", 200);
    }
    return mv;
}

/** GET logged-models/<id>: a logged model's info (MLflow 3). */
export async function getLoggedModel(conn: RegistryConnection, modelId: string): Promise<LoggedModelInfo> {
    const body = await getJson(conn, `logged-models/${encodeURIComponent(modelId)}`);
    const info = body.model?.info;
    if (!info) throw new RegistryError(`MLflow returned no info for logged model ${modelId}`, "http", 200);
    return info;
}

/** Resolves `<registeredModel>@<alias>` to its version and the s3:// storageUri of its artifacts. */
export async function resolveAlias(
    conn: RegistryConnection,
    registeredModel: string,
    alias: string,
    artifactsDestination: string,
): Promise<ResolvedModel> {
    const version = await getModelVersionByAlias(conn, registeredModel, alias);
    const id = loggedModelId(version.source);
    const loggedModel = id !== undefined ? await getLoggedModel(conn, id) : undefined;
    const storageUri = storageUriForVersion({ name: registeredModel, ...version }, artifactsDestination, loggedModel);
    return { registeredModel, alias, version: version.version, source: version.source, storageUri };
}
