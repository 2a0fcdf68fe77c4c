// Reads and validates the controller's configuration file (a ConfigMap key in the cluster, any file
// locally; its type is shared/controllerConfig.ts), with messages that name the field.
import { DEFAULT_ALIAS, isMlflowAlias } from "../shared/mlflow";
import {
    CONFIG_DEFAULTS,
    DEFAULT_WEBHOOK_PATH,
    type ControllerConfig,
    type ModelConfig,
    type TargetConfig,
} from "../shared/controllerConfig";

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

class ConfigError extends Error {
    constructor(message: string) {
        super(`invalid controller config: ${message}`);
        this.name = "ConfigError";
    }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Obj, key: string, where: string, required: true): string;
function str(o: Obj, key: string, where: string, required?: false): string | undefined;
function str(o: Obj, key: string, where: string, required = false): string | undefined {
    const v = o[key];
    if (v === undefined && !required) return undefined;
    if (typeof v !== "string" || v.length === 0) throw new ConfigError(`${where}.${key} must be a non-empty string, not ${JSON.stringify(v)}`);
    return v;
}

function int(o: Obj, key: string, where: string, dflt: number, min: number, max: number): number {
    const v = o[key] ?? dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
        throw new ConfigError(`${where}.${key} must be an integer ${min}–${max}, not ${JSON.stringify(o[key])}`);
    }
    return v;
}

function obj(o: Obj, key: string, where: string): Obj {
    const v = o[key] ?? {};
    if (!isObj(v)) throw new ConfigError(`${where}.${key} must be an object`);
    return v;
}

function onlyKeys(o: Obj, allowed: string[], where: string): void {
    const unknown = Object.keys(o).filter((k) => !allowed.includes(k));
    if (unknown.length > 0) throw new ConfigError(`${where} has unknown field(s) ${unknown.join(", ")} (allowed: ${allowed.join(", ")})`);
}

function httpUrl(v: string, where: string): string {
    let u: URL;
    try {
        u = new URL(v);
    } catch {
        throw new ConfigError(`${where} "${v}" is not a URL`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new ConfigError(`${where} "${v}" must be http:// or https://`);
    if (u.username || u.password) throw new ConfigError(`${where} must not carry credentials; use usernameFile/passwordFile`);
    return v;
}

function parseTarget(t: unknown, where: string): TargetConfig {
    if (!isObj(t)) throw new ConfigError(`${where} must be an object`);
    const kind = t.kind;
    if (kind === "InferenceService") {
        onlyKeys(t, ["kind", "namespace", "name", "template"], where);
        const namespace = str(t, "namespace", where, true);
        const name = str(t, "name", where, true);
        for (const [k, v] of [["namespace", namespace], ["name", name]]) {
            if (!DNS_SUBDOMAIN.test(v) || v.length > 253) throw new ConfigError(`${where}.${k} "${v}" is not a Kubernetes name`);
        }
        if (t.template !== undefined && !isObj(t.template)) throw new ConfigError(`${where}.template must be an object`);
        return { kind, namespace, name, ...(t.template !== undefined ? { template: t.template as Obj } : {}) };
    }
    if (kind === "Command") {
        onlyKeys(t, ["kind", "stateFile", "command", "timeoutMs"], where);
        const command = t.command;
        if (command !== undefined && (!Array.isArray(command) || command.length === 0 || command.some((c) => typeof c !== "string"))) {
            throw new ConfigError(`${where}.command must be a non-empty array of strings`);
        }
        return {
            kind,
            stateFile: str(t, "stateFile", where, true),
            ...(command !== undefined ? { command: command as string[] } : {}),
            timeoutMs: int(t, "timeoutMs", where, CONFIG_DEFAULTS.commandTimeoutMs, 1000, 3600000),
        };
    }
    throw new ConfigError(`${where}.kind must be "InferenceService" or "Command", not ${JSON.stringify(kind)}`);
}

/** How logs and errors name a target, e.g. `InferenceService mlflow/wine` or `Command .local/serving/wine.json`. */
export function targetDescription(t: TargetConfig): string {
    return t.kind === "Command" ? `Command ${t.stateFile}` : `${t.kind} ${t.namespace}/${t.name}`;
}

/** Validates a parsed config file and fills in the defaults. Throws an Error naming the first bad field. */
export function parseConfig(raw: unknown): ControllerConfig {
    if (!isObj(raw)) throw new ConfigError("the file must hold a JSON object");
    onlyKeys(raw, ["mlflow", "pollIntervalSeconds", "backoff", "http", "webhook", "kubernetes", "models", "shutdownGraceMs", "logLevel"], "config");

    const m = obj(raw, "mlflow", "config");
    onlyKeys(m, ["trackingUri", "usernameFile", "passwordFile", "timeoutMs", "artifactsDestination"], "mlflow");
    const usernameFile = str(m, "usernameFile", "mlflow");
    const passwordFile = str(m, "passwordFile", "mlflow");
    if ((usernameFile === undefined) !== (passwordFile === undefined)) throw new ConfigError("mlflow.usernameFile and mlflow.passwordFile go together");
    const artifactsDestination = str(m, "artifactsDestination", "mlflow", true);
    if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(artifactsDestination)) {
        throw new ConfigError(`mlflow.artifactsDestination "${artifactsDestination}" must be s3://<bucket>[/<prefix>]`);
    }
    const mlflow = {
        trackingUri: httpUrl(str(m, "trackingUri", "mlflow", true), "mlflow.trackingUri"),
        ...(usernameFile !== undefined ? { usernameFile, passwordFile } : {}),
        timeoutMs: int(m, "timeoutMs", "mlflow", CONFIG_DEFAULTS.timeoutMs, 100, 120000),
        artifactsDestination,
    };

    const b = obj(raw, "backoff", "config");
    onlyKeys(b, ["initialMs", "maxMs"], "backoff");
    const backoff = {
        initialMs: int(b, "initialMs", "backoff", CONFIG_DEFAULTS.backoff.initialMs, 1, 600000),
        maxMs: int(b, "maxMs", "backoff", CONFIG_DEFAULTS.backoff.maxMs, 1, 3600000),
    };
    if (backoff.maxMs < backoff.initialMs) throw new ConfigError("backoff.maxMs must be ≥ backoff.initialMs");

    const h = obj(raw, "http", "config");
    onlyKeys(h, ["host", "webhookPort", "metricsPort"], "http");
    const http = {
        host: str(h, "host", "http") ?? CONFIG_DEFAULTS.http.host,
        webhookPort: int(h, "webhookPort", "http", CONFIG_DEFAULTS.http.webhookPort, 0, 65535),
        metricsPort: int(h, "metricsPort", "http", CONFIG_DEFAULTS.http.metricsPort, 0, 65535),
    };
    if (http.webhookPort !== 0 && http.webhookPort === http.metricsPort) throw new ConfigError("http.webhookPort and http.metricsPort must differ");

    let webhook: ControllerConfig["webhook"];
    if (raw.webhook !== undefined) {
        const w = obj(raw, "webhook", "config");
        onlyKeys(w, ["secretFile", "path", "toleranceSeconds", "register"], "webhook");
        const path = str(w, "path", "webhook") ?? DEFAULT_WEBHOOK_PATH;
        if (!path.startsWith("/")) throw new ConfigError(`webhook.path "${path}" must start with /`);
        let register: { name: string; url: string } | undefined;
        if (w.register !== undefined) {
            const r = obj(w, "register", "webhook");
            onlyKeys(r, ["name", "url"], "webhook.register");
            register = { name: str(r, "name", "webhook.register", true), url: httpUrl(str(r, "url", "webhook.register", true), "webhook.register.url") };
        }
        webhook = {
            secretFile: str(w, "secretFile", "webhook", true),
            path,
            toleranceSeconds: int(w, "toleranceSeconds", "webhook", CONFIG_DEFAULTS.toleranceSeconds, 1, 86400),
            ...(register ? { register } : {}),
        };
    }

    const k = obj(raw, "kubernetes", "config");
    onlyKeys(k, ["server", "tokenFile", "caFile", "insecureSkipTlsVerify", "timeoutMs"], "kubernetes");
    const server = str(k, "server", "kubernetes");
    if (server !== undefined) httpUrl(server, "kubernetes.server");
    if (k.insecureSkipTlsVerify !== undefined && typeof k.insecureSkipTlsVerify !== "boolean") throw new ConfigError("kubernetes.insecureSkipTlsVerify must be a boolean");
    const kubernetes = {
        ...(server !== undefined ? { server } : {}),
        ...(k.tokenFile !== undefined ? { tokenFile: str(k, "tokenFile", "kubernetes", true) } : {}),
        ...(k.caFile !== undefined ? { caFile: str(k, "caFile", "kubernetes", true) } : {}),
        insecureSkipTlsVerify: (k.insecureSkipTlsVerify as boolean | undefined) ?? false,
        timeoutMs: int(k, "timeoutMs", "kubernetes", CONFIG_DEFAULTS.kubernetesTimeoutMs, 100, 120000),
    };

    if (!Array.isArray(raw.models) || raw.models.length === 0) throw new ConfigError("models must be a non-empty array");
    const keys = new Set<string>();
    const targets = new Set<string>();
    const models = raw.models.map((mm, i): ModelConfig => {
        const where = `models[${i}]`;
        if (!isObj(mm)) throw new ConfigError(`${where} must be an object`);
        onlyKeys(mm, ["key", "registeredModel", "alias", "target"], where);
        const target = parseTarget(mm.target, `${where}.target`);
        const registeredModel = str(mm, "registeredModel", where, true);
        const alias = str(mm, "alias", where) ?? DEFAULT_ALIAS;
        if (!isMlflowAlias(alias)) {
            throw new ConfigError(`${where}.alias "${alias}" is not a valid MLflow alias (letters, digits, '_' and '-'; not "latest" or "v<N>")`);
        }
        const key = str(mm, "key", where) ?? (target.kind === "Command" ? registeredModel : target.name);
        if (!/^[\w.-]{1,128}$/.test(key)) throw new ConfigError(`${where}.key "${key}" must be 1–128 letters, digits, '_', '.', '-'`);
        if (keys.has(key)) throw new ConfigError(`${where}.key "${key}" is used twice`);
        keys.add(key);
        const id = targetDescription(target);
        if (targets.has(id)) throw new ConfigError(`${where}.target ${id} is followed twice: two aliases would fight over it`);
        targets.add(id);
        return { key, registeredModel, alias, target };
    });

    const logLevel = raw.logLevel ?? CONFIG_DEFAULTS.logLevel;
    if (!["debug", "info", "warn", "error"].includes(logLevel as string)) throw new ConfigError(`logLevel must be debug, info, warn or error, not ${JSON.stringify(logLevel)}`);
    return {
        mlflow,
        pollIntervalSeconds: int(raw, "pollIntervalSeconds", "config", CONFIG_DEFAULTS.pollIntervalSeconds, 1, 86400),
        backoff,
        http,
        ...(webhook ? { webhook } : {}),
        kubernetes,
        models,
        shutdownGraceMs: int(raw, "shutdownGraceMs", "config", CONFIG_DEFAULTS.shutdownGraceMs, 0, 600000),
        logLevel: logLevel as ControllerConfig["logLevel"],
    };
}
