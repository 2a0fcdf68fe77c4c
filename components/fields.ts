// The value types the components' config schemas (components/*/schema.ts) are built from, each with the
// message a user sees when a value is wrong. Pure: zod and regular expressions, no Pulumi.
import { CronExpressionParser } from "cron-parser";
import { z } from "zod";

// Kubernetes quantity (resource.Quantity): a decimal number with an optional SI or binary suffix.
// Hand-written because no maintained npm package exposes the apimachinery parser.
const QUANTITY = /^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
/** RFC 1123 DNS subdomain, as Kubernetes validates host names and object names. */
export const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** RFC 1123 DNS label: namespaces, Helm release names. */
export const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens. */
export const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
// An image reference with an explicit tag or digest, never `latest`.
const PINNED_IMAGE = /^[^\s:@]+(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;

/** Bytes (or cores) of a Kubernetes quantity, for comparing two of them. */
export function quantityValue(q: string): number {
    const m = QUANTITY.exec(q);
    if (!m) throw new Error(`not a Kubernetes quantity: ${q}`);
    const factors: Record<string, number> = {
        m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
        Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
    };
    return Number(m[1]) * (m[3] ? factors[m[3]] : 1);
}

export const quantity = z.string().regex(QUANTITY, "must be a Kubernetes quantity such as 500m, 512Mi or 10Gi");

export const image = z
    .string()
    .regex(PINNED_IMAGE, "must be an image reference")
    .refine((s) => /(:[\w][\w.-]*|@sha256:[a-f0-9]{64})$/.test(s), "must pin a tag or a sha256 digest")
    .refine((s) => !/:latest(@|$)/.test(s), "must not use the `latest` tag");

export const replicas = z.number().int().min(1, "must be at least 1");

export const dnsName = (what: string) => z.string().regex(DNS_NAME, `must be ${what}`);
export const dnsLabel = (what: string) => z.string().regex(DNS_LABEL, `must be ${what}`);
export const bucket = z.string().regex(BUCKET, "must be an S3 bucket name (3-63 of a-z 0-9 . -)");

const resourceList = z.strictObject({
    cpu: quantity.optional().describe("CPU, e.g. 250m"),
    memory: quantity.optional().describe("memory, e.g. 512Mi"),
    "ephemeral-storage": quantity.optional().describe("scratch disk, e.g. 1Gi"),
});
export type ResourceList = z.infer<typeof resourceList>;

/** Container requests and limits (cpu, memory, ephemeral-storage), each list defaulted as a whole. */
export const resources = (requests: ResourceList, limits: ResourceList) =>
    z
        .strictObject({
            requests: resourceList.prefault(requests),
            limits: resourceList.prefault(limits),
        })
        .prefault({});
export type Resources = z.infer<ReturnType<typeof resources>>;

// Prometheus durations as ServiceMonitor intervals take them: 30s, 1m, 1m30s.
const PROM_DURATION = /^(\d+(ms|s|m|h))+$/;
export const promDuration = (example: string) => z.string().regex(PROM_DURATION, `must be a Prometheus duration such as ${example}`);

/** Seconds of a Prometheus duration (`1m30s` → 90). */
export function durationSeconds(d: string): number {
    return [...d.matchAll(/(\d+)(ms|s|m|h)/g)].reduce((t, [, n, u]) => t + Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[u as "ms"]!, 0);
}

export const ratio = z.number().gt(0, "must be above 0").lt(1, "must be below 1");

/**
 * A rule between fields: each involved field (a dotted path relative to the object the rule checks)
 * with the message to show when that field is the one to blame. The config loader names the fields the
 * stack file sets (the ones the user changed), or all of them when the stack sets none.
 */
export function conflict(ctx: z.RefinementCtx, object: unknown, blame: Record<string, string>): void {
    const [first] = Object.keys(blame);
    const values = Object.fromEntries(Object.keys(blame).map((rel) => [rel, valueAt(object, rel.split("."))]));
    ctx.addIssue({ code: "custom", path: first.split("."), message: blame[first], params: { blame, base: first, values } });
}

/** The value at a path of nested objects and arrays, or undefined. */
export const valueAt = (v: unknown, path: readonly PropertyKey[]): unknown =>
    path.reduce<unknown>((o, p) => (o !== null && typeof o === "object" ? (o as Record<PropertyKey, unknown>)[p] : undefined), v);

/** A field that the object's other settings require. */
export function missing(ctx: z.RefinementCtx, path: string, message: string): void {
    ctx.addIssue({ code: "custom", path: path.split("."), message, params: { missing: true } });
}

// Kubernetes parses CronJob schedules with robfig/cron's standard parser: five fields or a @descriptor,
// day of week 0-6. cron-parser checks the ranges and names; the field count and the day-of-week
// bound are the standard parser's.
const CRON_DESCRIPTORS = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
export function cronProblem(schedule: string): string | undefined {
    const fields = schedule.trim().split(/\s+/);
    if (fields.length === 1 && CRON_DESCRIPTORS.includes(fields[0])) return undefined;
    if (fields.length !== 5) return `must be a five-field cron expression (minute hour day-of-month month day-of-week) such as "17 2 * * *", or one of ${CRON_DESCRIPTORS.join(", ")}`;
    if (/(^|[^\d])7([^\d]|$)/.test(fields[4])) return "day of week must be 0-6 (Sunday is 0)";
    try {
        CronExpressionParser.parse(schedule);
    } catch (e) {
        return `is not a valid cron expression: ${(e as Error).message}`;
    }
    return undefined;
}
export const cron = z.string().superRefine((s, ctx) => {
    const problem = cronProblem(s);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
});
