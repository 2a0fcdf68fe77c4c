// The only module that reads Pulumi config. It turns the stack's keys into one typed, fully defaulted
// object (stacks/schema.ts), applies the rules across slices (stacks/rules.ts), resolves the values one
// slice derives from another, and refuses anything wrong before a resource is created.
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { type IngressConfig, nginxSize } from "../components/authIngress/schema";
import { ConfigError, describeIssue, findingMessages, keyName, PROJECT, unknownKeyProblem } from "./errors";
import { ruleFindings } from "./rules";
import { type ParsedConfig, platformSchema, SECRET_KEYS, type SecretKey, type SliceKey } from "./schema";

export { ConfigError, PROJECT } from "./errors";

/** The stack configuration each component gets its slice of. */
export interface PlatformConfig extends Omit<ParsedConfig, "ingress"> {
    /** proxyBodySize resolved (tracking.tmpSizeLimit when unset). */
    readonly ingress: IngressConfig;
    readonly secrets: Readonly<Partial<Record<SecretKey, pulumi.Output<string>>>>;
}

// The runtime knows which keys the stack file holds as `secure:` values; the SDK exports the check
// without declaring it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const isConfigSecret: (key: string) => boolean = require("@pulumi/pulumi/runtime/config").isConfigSecret;

const SHAPE = platformSchema.shape as Record<SliceKey, z.ZodType>;

/**
 * The stack's keys as the schema reads them: objects and arrays parsed from the JSON the runtime
 * passes, strings left as they are. Unknown keys, flat `a.b` keys set without `--path`, and secret
 * keys given in plaintext are problems, reported by key.
 */
function readRaw(): { raw: Record<string, unknown>; secrets: Set<SecretKey>; problems: string[] } {
    const raw: Record<string, unknown> = {};
    const secrets = new Set<SecretKey>();
    const problems: string[] = [];
    const prefix = `${PROJECT}:`;
    const known = [...Object.keys(SHAPE), ...SECRET_KEYS];
    for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
        if (!fullKey.startsWith(prefix)) continue;
        const key = fullKey.slice(prefix.length);
        if ((SECRET_KEYS as readonly string[]).includes(key)) {
            if (isConfigSecret(fullKey)) secrets.add(key as SecretKey);
            else problems.push(`${keyName([key])} is set in plaintext: it must be a secret; set it with \`pulumi config set --secret ${key} <value>\``);
            continue;
        }
        const [head, ...rest] = key.split(".");
        if (rest.length > 0 && head in SHAPE) {
            problems.push(
                `${keyName([key])} is a flat key: it was set without --path, so it does not reach ${keyName([head])}; ` +
                    `remove it and run \`pulumi config set --path ${key} <value>\``,
            );
        } else if (!(key in SHAPE)) {
            problems.push(unknownKeyProblem([], key, known));
        } else {
            raw[key] = isStringSchema(SHAPE[key as SliceKey]) ? value : parseJson(value);
        }
    }
    return { raw, secrets, problems };
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
    const { raw, secrets, problems } = readRaw();
    // Each slice on its own, so that one bad slice does not hide the problems of the others, and the
    // rules run on every slice that parsed.
    const cfg: Partial<Record<SliceKey, unknown>> = {};
    const parsed = new Set<SliceKey>();
    for (const key of Object.keys(SHAPE) as SliceKey[]) {
        const result = SHAPE[key].safeParse(raw[key]);
        if (result.success) {
            cfg[key] = result.data;
            parsed.add(key);
        } else {
            for (const issue of result.error.issues) problems.push(...describeIssue(raw, { ...issue, path: [key, ...issue.path] }, platformSchema));
        }
    }
    for (const f of ruleFindings(cfg as Partial<ParsedConfig>, parsed, secrets)) problems.push(...findingMessages(raw, f));
    if (problems.length) throw new ConfigError(problems);
    return resolve(cfg as ParsedConfig, c);
}

/** The values one slice derives from another, and the secrets as Pulumi secrets. */
function resolve(p: ParsedConfig, c: pulumi.Config): PlatformConfig {
    const secrets: Partial<Record<SecretKey, pulumi.Output<string>>> = {};
    for (const key of SECRET_KEYS) {
        const value = c.getSecret(key);
        if (value !== undefined) secrets[key] = value;
    }
    return {
        ...p,
        ingress: { ...p.ingress, proxyBodySize: p.ingress.proxyBodySize ?? nginxSize(p.tracking.tmpSizeLimit) },
        // Model servers are monitored only where serving runs; webhooks only reach a running controller.
        monitoring: { ...p.monitoring, modelServers: p.monitoring.modelServers && p.serving.enabled },
        deployController: { ...p.deployController, webhooks: p.deployController.enabled && p.deployController.webhooks },
        secrets,
    };
}
