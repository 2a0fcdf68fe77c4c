// The value types the components' config schemas (components/*/schema.ts) are built from, each with the
// message a user sees when a value is wrong. Pure: zod and regular expressions, no Pulumi.
import { CronExpressionParser } from "cron-parser";
import { z } from "zod";
import { QUANTITY, quantityValue } from "../shared/quantity";

export { quantityValue };
/** RFC 1123 DNS subdomain, as Kubernetes validates host names and object names. */
export const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** RFC 1123 DNS label: namespaces, Helm release names. */
export const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens. */
export const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** A quantity's value for comparisons inside refinements, which also run on values that failed: NaN compares false. */
export const quantityOrNaN = (q: string): number => (QUANTITY.test(q) ? quantityValue(q) : NaN);

export const quantity = z.string().regex(QUANTITY, "must be a Kubernetes quantity such as 500m, 512Mi or 10Gi");
/** A volume or scratch size: a quantity above zero. */
export const size = quantity.refine((q) => !QUANTITY.test(q) || quantityValue(q) > 0, "must be above 0");

// The image reference grammar of distribution/reference (reference.go), which container runtimes and
// Kubernetes use: [domain[:port]/]path[:tag][@digest], the path lowercase. Hand-written because the npm
// packages found accept uppercase repositories or need a native regex engine.
const ALNUM = "[a-z0-9]+";
const PATH_COMPONENT = `${ALNUM}(?:(?:[_.]|__|-+)${ALNUM})*`;
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const DIGEST = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const IMAGE_REFERENCE = new RegExp(`^(?:(${DOMAIN})/)?(${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::([\\w][\\w.-]{0,127}))?(?:@(${DIGEST}))?$`);

export interface ImageReference {
    readonly domain?: string;
    readonly path: string;
    readonly tag?: string;
    readonly digest?: string;
}

/** The parts of an image reference, or why it is not one. */
export function parseImage(ref: string): ImageReference | string {
    const m = IMAGE_REFERENCE.exec(ref);
    // The first component names a registry only if it looks like a host (a dot, a port, or localhost);
    // otherwise it is part of the path, and paths are lowercase.
    if (m && m[1] !== undefined && !/[.:]/.test(m[1]) && m[1] !== "localhost" && !new RegExp(`^${PATH_COMPONENT}$`).test(m[1])) m.length = 0;
    if (!m || m.length === 0) {
        return /[A-Z]/.test(ref.split("@")[0].replace(/^[^/]*[.:][^/]*\//, ""))
            ? "must be an image reference: the repository path must be lowercase"
            : "must be an image reference such as registry.example.com/team/image:1.2.3";
    }
    const [domain, path] = m[1] !== undefined && !/[.:]/.test(m[1]) && m[1] !== "localhost" ? [undefined, `${m[1]}/${m[2]}`] : [m[1], m[2]];
    if ((domain ? domain.length + 1 : 0) + path.length > 255) return "must be an image reference: the name is longer than 255 characters";
    return { domain, path, tag: m[3], digest: m[4] };
}

/** An image reference pinned by tag (not `latest`) or by digest. */
export const image = z.string().superRefine((ref, ctx) => {
    const parsed = parseImage(ref);
    if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
    else if (parsed.tag === undefined && parsed.digest === undefined) ctx.addIssue({ code: "custom", message: "must pin a tag or a digest" });
    else if (parsed.tag === "latest") ctx.addIssue({ code: "custom", message: "must not use the `latest` tag" });
});

export const replicas = z.number().int().min(1, "must be at least 1");

export const dnsName = (what: string) => z.string().regex(DNS_NAME, `must be ${what}`);
export const dnsLabel = (what: string) => z.string().regex(DNS_LABEL, `must be ${what}`);
export const bucket = z.string().regex(BUCKET, "must be an S3 bucket name (3-63 of a-z 0-9 . -)");

const RESOURCE_NAMES = ["cpu", "memory", "ephemeral-storage"] as const;
export type ResourceList = Record<(typeof RESOURCE_NAMES)[number], string>;

/** A requests or limits list whose every entry defaults on its own. */
const resourceList = (d: ResourceList) =>
    z
        .strictObject({
            cpu: size.default(d.cpu).describe("CPU, e.g. 250m"),
            memory: size.default(d.memory).describe("memory, e.g. 512Mi"),
            "ephemeral-storage": size.default(d["ephemeral-storage"]).describe("scratch disk, e.g. 1Gi"),
        })
        .prefault({});

/**
 * Container requests and limits (cpu, memory, ephemeral-storage), each value defaulted on its own; a
 * request above its limit is refused, as Kubernetes would refuse the pod.
 */
export const resources = (requests: ResourceList, limits: ResourceList) =>
    z
        .strictObject({ requests: resourceList(requests).describe("what the scheduler reserves"), limits: resourceList(limits).describe("what the container may use") })
        .meta({ row: "resources" })
        .superRefine((r, ctx) => {
            for (const name of RESOURCE_NAMES) {
                const [req, lim] = [r.requests[name], r.limits[name]];
                if (quantityOrNaN(req) > quantityOrNaN(lim)) {
                    conflict(ctx, r, { [`requests.${name}`]: `must not exceed limits.${name} ("${lim}")`, [`limits.${name}`]: `must be at least requests.${name} ("${req}")` });
                }
            }
        })
        .prefault({});
export type Resources = { requests: ResourceList; limits: ResourceList };

// Prometheus durations as ServiceMonitor intervals take them: 30s, 1m, 1m30s.
const PROM_DURATION = /^(\d+(ms|s|m|h))+$/;
export const promDuration = (example: string) => z.string().regex(PROM_DURATION, `must be a Prometheus duration such as ${example}`);

/** Seconds of a Prometheus duration (`1m30s` → 90); NaN for anything else. */
export function durationSeconds(d: string): number {
    if (!PROM_DURATION.test(d)) return NaN;
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

/** robfig/cron's descriptors as five fields (cron-parser spells some of them differently). */
const CRON_DESCRIPTOR_FIELDS: Record<string, string> = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
};
/** Where cronIntervalSeconds starts reading a schedule's days, so a schedule always gives the same answer. */
const CRON_SCAN_FROM = new Date("2025-01-01T00:00:00Z");
const CRON_SCAN_SECONDS = 400 * 24 * 3600;
const cronIntervals = new Map<string, number>();
/**
 * The longest time between two runs of a schedule (UTC, as the platform's CronJobs run), in seconds; a
 * schedule cronProblem accepts. Every day a schedule runs on has the same times (its hours × minutes),
 * so the times are read from the fields and the days from cron-parser, over a year and a month (a
 * leap-day schedule: to its second day, 4 years on). cron-parser takes about half a millisecond a
 * step, so this is at most some 400 steps, and answers are kept per schedule.
 */
export function cronIntervalSeconds(schedule: string): number {
    const known = cronIntervals.get(schedule);
    if (known !== undefined) return known;
    const fields = (CRON_DESCRIPTOR_FIELDS[schedule.trim()] ?? schedule).trim().split(/\s+/);
    const { hour, minute } = CronExpressionParser.parse(fields.join(" ")).fields;
    const times = hour.values.flatMap((h) => minute.values.map((m) => Number(h) * 3600 + Number(m) * 60)).sort((a, b) => a - b);
    let longest = times.slice(1).reduce((gap, t, i) => Math.max(gap, t - times[i]), 0);
    // From a run day's last run to the next run day's first.
    const days = CronExpressionParser.parse(`0 0 ${fields.slice(2).join(" ")}`, { currentDate: CRON_SCAN_FROM, tz: "UTC" });
    const first = days.next().getTime() / 1000;
    for (let previous = first, i = 0; i === 0 || previous - first < CRON_SCAN_SECONDS; i++) {
        const day = days.next().getTime() / 1000;
        longest = Math.max(longest, day - previous - times[times.length - 1] + times[0]);
        previous = day;
    }
    cronIntervals.set(schedule, longest);
    return longest;
}
