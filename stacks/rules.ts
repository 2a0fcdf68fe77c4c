// Rules that span config slices, or slices and secrets: each says which slices it reads and reports
// findings by key (stacks/errors.ts turns them into messages naming what the user set). A rule within
// one slice lives in that slice's schema instead.
import { nginxSizeValue } from "../components/authIngress/schema";
import { quantityValue } from "../components/fields";
import type { Finding } from "./errors";
import type { ParsedConfig, SecretKey, SliceKey } from "./schema";

type Path = readonly (string | number)[];

export interface Report {
    /** Keys that do not go together: each with what to say when it is the one the user changed. */
    conflict(keys: readonly { path: Path; message: string }[]): void;
    /** A key the other settings need. */
    missing(path: Path, message: string): void;
}

export interface Rule {
    /** The slices the rule reads; it runs only when all of them parsed. */
    readonly slices: readonly SliceKey[];
    check(cfg: ParsedConfig, secrets: ReadonlySet<SecretKey>, report: Report): void;
}

const get = (cfg: ParsedConfig, path: Path): unknown => path.reduce<any>((o, p) => o?.[p], cfg);

export const RULES: readonly Rule[] = [
    {
        // The password of an external database is the user's; an in-cluster one is generated.
        slices: ["database"],
        check(cfg, secrets, report) {
            const external = cfg.database.mode === "external";
            if (external && cfg.database.host === undefined) report.missing(["database", "host"], 'required when database.mode is "external"');
            if (external && !secrets.has("databasePassword")) {
                report.missing(["databasePassword"], 'required when database.mode is "external": set it with `pulumi config set --secret databasePassword <password>`');
            }
            if (!external && secrets.has("databasePassword")) {
                report.conflict([{ path: ["databasePassword"], message: 'has no effect: database.mode is "in-cluster", whose password is generated; remove it or set database.mode: external' }]);
            }
        },
    },
    {
        slices: ["objectStore"],
        check(cfg, secrets, report) {
            const s3 = cfg.objectStore.mode === "s3";
            for (const key of ["s3AccessKeyId", "s3SecretAccessKey"] as const) {
                if (s3 && !secrets.has(key)) report.missing([key], `required when objectStore.mode is "s3": set it with \`pulumi config set --secret ${key} <value>\``);
            }
            if (s3 && secrets.has("s3ReadOnlyAccessKeyId") !== secrets.has("s3ReadOnlySecretAccessKey")) {
                const absent = secrets.has("s3ReadOnlyAccessKeyId") ? "s3ReadOnlySecretAccessKey" : "s3ReadOnlyAccessKeyId";
                report.missing([absent], "the read-only pair is set together (or not at all: serving then uses the read-write pair)");
            }
            if (!s3) {
                for (const key of ["s3AccessKeyId", "s3SecretAccessKey", "s3ReadOnlyAccessKeyId", "s3ReadOnlySecretAccessKey"] as const) {
                    if (secrets.has(key)) report.conflict([{ path: [key], message: 'has no effect: objectStore.mode is "minio", whose users and keys are generated; remove it or set objectStore.mode: s3' }]);
                }
            }
        },
    },
    {
        // The tracking server spools each proxied upload in /tmp: the edge must not accept a bigger body.
        slices: ["ingress", "tracking"],
        check(cfg, _secrets, report) {
            const body = cfg.ingress.proxyBodySize;
            if (body !== undefined && nginxSizeValue(body) > quantityValue(cfg.tracking.tmpSizeLimit)) {
                report.conflict([
                    { path: ["ingress", "proxyBodySize"], message: `must not exceed tracking.tmpSizeLimit ("${cfg.tracking.tmpSizeLimit}"), where the server spools uploads` },
                    { path: ["tracking", "tmpSizeLimit"], message: `must be at least ingress.proxyBodySize ("${body}"): the server spools uploads there` },
                ]);
            }
        },
    },
    {
        // Basic-auth passwords cross the network on every request.
        slices: ["development", "ingress"],
        check(cfg, _secrets, report) {
            if (!cfg.development && cfg.ingress.tls === undefined && !cfg.ingress.allowPlaintext) {
                report.missing(
                    ["ingress", "tls"],
                    "this stack is not marked `development: true`, so the edge needs TLS: set exactly one of ingress.tls.secretName, clusterIssuer or issuer, " +
                        "or set ingress.allowPlaintext: true to accept basic-auth passwords in clear text",
                );
            }
        },
    },
    {
        slices: ["serving", "deployController"],
        check(cfg, _secrets, report) {
            const { serving, deployController } = cfg;
            if (deployController.enabled && !(serving.enabled && serving.models.length > 0)) {
                report.conflict([
                    { path: ["deployController", "enabled"], message: "needs serving.enabled and at least one serving.models entry: the controller follows those models" },
                    ...(serving.enabled ? [] : [{ path: ["serving", "enabled"], message: "must be true while deployController.enabled is" }]),
                    ...(serving.models.length ? [] : [{ path: ["serving", "models"], message: "must list the models deployController.enabled follows" }]),
                ]);
            }
            if (deployController.enabled && serving.imageRegistry !== undefined) {
                report.conflict([
                    { path: ["serving", "imageRegistry"], message: "cannot be followed by the deploy controller: image mode builds images at `pulumi up`; remove it or set deployController.enabled: false" },
                    { path: ["deployController", "enabled"], message: "cannot follow image mode (serving.imageRegistry): the controller moves storageUris, it does not build images" },
                ]);
            }
            // Without the registry (resolveAliases off), the controller or an image, nothing says what to serve.
            if (serving.enabled && !serving.resolveAliases && !deployController.enabled && serving.imageRegistry === undefined) {
                serving.models.forEach((m, i) => {
                    if (m.storageUri === undefined) {
                        report.missing(
                            ["serving", "models", i, "storageUri"],
                            `model "${m.name}" needs an s3:// storageUri when serving.resolveAliases is false, unless deployController.enabled (the controller then creates the InferenceService)`,
                        );
                    }
                });
            }
        },
    },
    {
        // Every worker process holds its own SQLAlchemy pool; keep the worst case under 80% of the server limit.
        slices: ["database", "tracking"],
        check(cfg, _secrets, report) {
            if (cfg.database.mode !== "in-cluster") return;
            const t = cfg.tracking;
            const pods: Path = t.autoscaling.enabled ? ["tracking", "autoscaling", "maxReplicas"] : ["tracking", "replicas"];
            const maxPods = get(cfg, pods) as number;
            const perWorker = t.dbPoolSize + t.dbMaxOverflow;
            const budget = maxPods * t.workers * perWorker;
            if (budget <= 0.8 * cfg.database.maxConnections) return;
            const need = `${budget} connections (pods ${maxPods} × workers ${t.workers} × (dbPoolSize + dbMaxOverflow) ${perWorker})`;
            const fits = Math.floor((0.8 * cfg.database.maxConnections) / (t.workers * perWorker));
            report.conflict([
                { path: ["database", "maxConnections"], message: `must be at least ${Math.ceil(budget / 0.8)}: the tracking server may open ${need}, and 20% stay free for other clients` },
                { path: pods, message: `needs ${need}, more than 80% of database.maxConnections (${cfg.database.maxConnections}); allowed: at most ${fits}, or raise database.maxConnections` },
                { path: ["tracking", "workers"], message: `needs ${need}, more than 80% of database.maxConnections (${cfg.database.maxConnections}); lower it or raise database.maxConnections` },
                { path: ["tracking", "dbPoolSize"], message: `needs ${need}, more than 80% of database.maxConnections (${cfg.database.maxConnections}); lower it or raise database.maxConnections` },
                { path: ["tracking", "dbMaxOverflow"], message: `needs ${need}, more than 80% of database.maxConnections (${cfg.database.maxConnections}); lower it or raise database.maxConnections` },
            ]);
        },
    },
];

/** Runs every rule whose slices parsed; returns the findings with the values they concern. */
export function ruleFindings(cfg: Partial<ParsedConfig>, parsed: ReadonlySet<SliceKey>, secrets: ReadonlySet<SecretKey>): Finding[] {
    const findings: Finding[] = [];
    const report: Report = {
        conflict: (keys) => findings.push({ kind: "conflict", keys: keys.map((k) => ({ ...k, value: get(cfg as ParsedConfig, k.path) })) }),
        missing: (path, message) => findings.push({ kind: "missing", path, message }),
    };
    for (const rule of RULES) if (rule.slices.every((s) => parsed.has(s))) rule.check(cfg as ParsedConfig, secrets, report);
    return findings;
}
