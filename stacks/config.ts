// The only module that reads Pulumi config. It turns the stack file into one typed, fully defaulted
// object and rejects bad values before any resource is created.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { ConfigError, describeIssue, keyName, PROJECT, unknownKeyProblem } from "./errors";
import { backupSchema } from "../components/databaseBackup/schema";
import { ingressSchema, nginxSize, nginxSizeValue } from "../components/authIngress/schema";
import { databaseSchema } from "../components/database/schema";
import { monitoringSchema } from "../components/monitoring/schema";
import { objectStoreSchema } from "../components/objectStore/schema";
import { trackingSchema } from "../components/trackingServer/schema";
import { DNS_LABEL, image, quantityValue, replicas } from "../components/fields";

export { ConfigError, PROJECT } from "./errors";
export { nginxSize, nginxSizeValue };

const MODEL_NAME = /^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$/;
const S3_URI = /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+/;

const servedModelSchema = z
    .strictObject({
        /** InferenceService name and v2 model name. */
        name: z.string().regex(MODEL_NAME, "must be a DNS label starting with a letter, at most 45 characters"),
        registeredModel: z.string().min(1, "must name a registered model"),
        alias: z.string().regex(/^[A-Za-z0-9_-]{1,255}$/, "must be an MLflow alias").refine((a) => a !== "latest" && !/^v\d+$/.test(a), "`latest` and `v<N>` are reserved by MLflow").default("champion"),
        /** Fallback when the alias cannot be resolved at `pulumi up`. */
        storageUri: z.string().regex(S3_URI, "must be an s3://bucket/path URI").optional(),
        replicas: z
            .strictObject({ min: replicas, max: replicas })
            .refine((r) => r.max >= r.min, { message: "max must be ≥ min", path: ["max"] })
            .default({ min: 1, max: 1 }),
        canary: z
            .strictObject({
                storageUri: z.string().regex(S3_URI, "must be an s3://bucket/path URI"),
                trafficPercent: z.number().int().min(1, "must be 1-99").max(99, "must be 1-99"),
            })
            .optional(),
    });

const servingSchema = z.strictObject({
    enabled: z.boolean().default(false),
    /** Install KServe v0.20.0 (Standard mode) from its pinned OCI charts; needs cert-manager. */
    installKServe: z.boolean().default(false),
    runtimeScope: z.enum(["namespaced", "cluster"]).default("namespaced"),
    runtimeImage: image.optional(),
    models: z
        .array(servedModelSchema)
        .refine((ms) => new Set(ms.map((m) => m.name)).size === ms.length, "must not repeat a model name")
        .default([]),
    /** Resolve each alias through the MLflow REST API (via the ingress, as its first user) at `pulumi up`. */
    resolveAliases: z.boolean().default(true),
    /** Image mode: build and push one MLServer image per model to this repository prefix (needs Docker). */
    imageRegistry: z.string().regex(/^[a-z0-9.-]+(:\d+)?(\/[a-z0-9._-]+)*$/, "must be a registry/repository prefix such as registry.example.com/ml").optional(),
});

const deployControllerSchema = z.strictObject({
    /** Follow each serving.models alias with the deploy controller (needs serving with ≥1 model). */
    enabled: z.boolean().default(false),
    pollIntervalSeconds: z.number().int().min(5, "must be at least 5").max(3600).default(30),
    /** Also react to MLflow registry webhooks (HMAC-signed); polling stays as the safety net. */
    webhooks: z.boolean().default(true),
});

const networkSchema = z.strictObject({
    /** Namespace of the ingress controller, admitted to the tracking server. */
    ingressControllerNamespace: z.string().regex(DNS_LABEL, "must be a namespace name").default("ingress-nginx"),
    /** Namespace of Prometheus, admitted to the metrics port. */
    prometheusNamespace: z.string().regex(DNS_LABEL, "must be a namespace name").default("monitoring"),
});

export const configSchema = z.strictObject({
    namespace: z.string().regex(DNS_LABEL, "must be a DNS label (a-z, 0-9, '-', ≤63 chars)").default("mlflow"),
    database: databaseSchema.prefault({}),
    objectStore: objectStoreSchema.prefault({}),
    tracking: trackingSchema.prefault({}),
    ingress: ingressSchema.prefault({}),
    network: networkSchema.prefault({}),
    backup: backupSchema.prefault({}),
    monitoring: monitoringSchema.prefault({}),
    serving: servingSchema.prefault({}),
    deployController: deployControllerSchema.prefault({}),
});


/** Secret config keys: top-level, read with getSecret so they stay secret end to end. */
export const SECRET_KEYS = [
    "databasePassword",
    "s3AccessKeyId",
    "s3SecretAccessKey",
    "s3ReadOnlyAccessKeyId",
    "s3ReadOnlySecretAccessKey",
] as const;
type SecretKey = (typeof SECRET_KEYS)[number];

type ParsedConfig = z.infer<typeof configSchema>;
export interface PlatformConfig extends Omit<ParsedConfig, "ingress"> {
    ingress: ParsedConfig["ingress"] & { proxyBodySize: string };
    secrets: Partial<Record<SecretKey, pulumi.Output<string>>>;
}

/** Config keys the project owns, as the Pulumi runtime passes them (`mlflow-platform:<key>`). */
function projectConfig(): Record<string, string> {
    const prefix = `${PROJECT}:`;
    return Object.fromEntries(
        Object.entries(pulumi.runtime.allConfig())
            .filter(([k]) => k.startsWith(prefix))
            .map(([k, v]) => [k.slice(prefix.length), v]),
    );
}

// The runtime knows which keys the stack file holds as `secure:` values; the SDK exports the check
// without declaring it.
const isConfigSecret: (key: string) => boolean = require("@pulumi/pulumi/runtime/config").isConfigSecret;

/**
 * The stack's keys as the schema reads them: objects and arrays parsed from the JSON the runtime
 * passes, strings left as they are. Unknown keys, flat `a.b` keys set without `--path`, and secret
 * keys given in plaintext are problems, reported by key.
 */
function readRaw(): { raw: Record<string, unknown>; problems: string[] } {
    const raw: Record<string, unknown> = {};
    const problems: string[] = [];
    const shape = configSchema.shape as Record<string, z.ZodType>;
    const known = [...Object.keys(shape), ...SECRET_KEYS];
    for (const [key, value] of Object.entries(projectConfig())) {
        if ((SECRET_KEYS as readonly string[]).includes(key)) {
            if (!isConfigSecret(`${PROJECT}:${key}`)) {
                problems.push(`${keyName([key])} is set in plaintext: it must be a secret; set it with \`pulumi config set --secret ${key} <value>\``);
            }
            continue;
        }
        const [head, ...rest] = key.split(".");
        if (rest.length > 0 && head in shape) {
            problems.push(
                `${keyName([key])} is a flat key: it was set without --path, so it does not reach ${keyName([head])}; ` +
                    `remove it and set \`pulumi config set --path ${key} <value>\``,
            );
            continue;
        }
        if (!(key in shape)) {
            problems.push(unknownKeyProblem([], key, known));
            continue;
        }
        raw[key] = isStringSchema(shape[key]) ? value : parseJson(value);
    }
    return { raw, problems };
}

const parseJson = (v: string): unknown => {
    try {
        return JSON.parse(v);
    } catch {
        return v; // the schema reports the type it expected
    }
};

/** A string-typed top-level key (e.g. `namespace`): the runtime passes its value as is, not as JSON. */
function isStringSchema(schema: z.ZodType): boolean {
    let s: any = schema;
    while (s?._zod?.def?.innerType) s = s._zod.def.innerType;
    return s?._zod?.def?.type === "string";
}

/** Reads, defaults and validates the whole stack configuration; throws one ConfigError listing every problem. */
export function loadConfig(c: pulumi.Config = new pulumi.Config(PROJECT)): PlatformConfig {
    const { raw, problems } = readRaw();
    const parsed = configSchema.safeParse(raw);
    if (!parsed.success) {
        for (const issue of parsed.error.issues) problems.push(...describeIssue(raw, issue, configSchema));
        throw new ConfigError(problems);
    }
    if (problems.length) throw new ConfigError(problems);

    const secrets: PlatformConfig["secrets"] = {};
    for (const key of SECRET_KEYS) {
        const value = c.getSecret(key);
        if (value !== undefined) secrets[key] = value;
    }
    const ingress = { ...parsed.data.ingress, proxyBodySize: parsed.data.ingress.proxyBodySize ?? nginxSize(parsed.data.tracking.tmpSizeLimit) };
    // Model servers are monitored only where serving runs.
    const monitoring = { ...parsed.data.monitoring, modelServers: parsed.data.monitoring.modelServers && parsed.data.serving.enabled };
    const config: PlatformConfig = { ...parsed.data, ingress, monitoring, secrets };
    const crossProblems = crossFieldProblems(config);
    if (crossProblems.length) throw new ConfigError(crossProblems);
    return config;
}

function crossFieldProblems(cfg: PlatformConfig): string[] {
    const problems: string[] = [];
    const need = (cond: boolean, msg: string) => {
        if (!cond) problems.push(msg);
    };
    if (cfg.database.mode === "external") {
        need(cfg.database.host !== undefined, `${PROJECT}:database.host is missing: required when database.mode is "external"`);
        need(cfg.secrets.databasePassword !== undefined, `${PROJECT}:databasePassword is missing: set it with \`pulumi config set --secret databasePassword …\` when database.mode is "external"`);
    }
    if (cfg.objectStore.mode === "s3") {
        need(cfg.secrets.s3AccessKeyId !== undefined, `${PROJECT}:s3AccessKeyId is missing: required (as a secret) when objectStore.mode is "s3"`);
        need(cfg.secrets.s3SecretAccessKey !== undefined, `${PROJECT}:s3SecretAccessKey is missing: required (as a secret) when objectStore.mode is "s3"`);
        const ro = [cfg.secrets.s3ReadOnlyAccessKeyId, cfg.secrets.s3ReadOnlySecretAccessKey].filter((v) => v !== undefined);
        need(ro.length !== 1, `${PROJECT}:s3ReadOnlyAccessKeyId and s3ReadOnlySecretAccessKey must be set together`);
    }
    // The tracking server spools each proxied upload in /tmp: the edge must not accept a bigger body.
    const body = nginxSizeValue(cfg.ingress.proxyBodySize);
    need(
        body > 0 && body <= quantityValue(cfg.tracking.tmpSizeLimit),
        `${PROJECT}:ingress.proxyBodySize = "${cfg.ingress.proxyBodySize}" is invalid: must be between 1 and tracking.tmpSizeLimit ` +
            `("${cfg.tracking.tmpSizeLimit}"), where the server spools uploads; raise tmpSizeLimit for bigger models`,
    );
    // Without the registry (resolveAliases off) and without the controller, nothing says what to serve.
    if (cfg.serving.enabled && !cfg.serving.resolveAliases && !cfg.deployController.enabled && !cfg.serving.imageRegistry) {
        cfg.serving.models.forEach((m, i) =>
            need(
                m.storageUri !== undefined,
                `${PROJECT}:serving.models.${i}.storageUri is missing: model "${m.name}" needs an s3:// storageUri when serving.resolveAliases is false, ` +
                    `unless deployController.enabled (the controller then creates the InferenceService)`,
            ),
        );
    }
    if (cfg.deployController.enabled) {
        need(
            cfg.serving.enabled && cfg.serving.models.length > 0,
            `${PROJECT}:deployController.enabled = true is invalid: the controller follows serving.models, so it needs serving.enabled and at least one model`,
        );
    }
    // Every worker process holds its own SQLAlchemy pool; keep the worst case under 80% of the server limit.
    if (cfg.database.mode === "in-cluster") {
        const maxPods = cfg.tracking.autoscaling.enabled ? cfg.tracking.autoscaling.maxReplicas : cfg.tracking.replicas;
        const budget = maxPods * cfg.tracking.workers * (cfg.tracking.dbPoolSize + cfg.tracking.dbMaxOverflow);
        need(
            budget <= 0.8 * cfg.database.maxConnections,
            `${PROJECT}:database.maxConnections = ${cfg.database.maxConnections} is too small: the tracking server may open ` +
                `${budget} connections (pods ${maxPods} × workers ${cfg.tracking.workers} × (dbPoolSize + dbMaxOverflow) ` +
                `${cfg.tracking.dbPoolSize + cfg.tracking.dbMaxOverflow}); allowed: at least ${Math.ceil(budget / 0.8)}`,
        );
    }
    return problems;
}
