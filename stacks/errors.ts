// How a bad stack configuration is reported: one ConfigError listing every problem, each naming the
// config key as a user writes it (`mlflow-platform:tracking.replicas`), the bad value and what is allowed.
import { closest, distance } from "fastest-levenshtein";
import type { z } from "zod";
import { valueAt } from "../components/fields";
import { RETIRED_KEYS } from "./schema";

export const PROJECT = "mlflow-platform";

/** Raised for any invalid stack configuration; lists every problem at once. */
export class ConfigError extends Error {
    constructor(public readonly problems: string[]) {
        super(`invalid stack configuration:\n  - ${problems.join("\n  - ")}`);
        this.name = "ConfigError";
    }
}

/** `mlflow-platform:a.b.0.c`: how `pulumi config set --path` names a nested key. */
export const keyName = (path: readonly (string | number)[]): string => (path.length ? `${PROJECT}:${path.join(".")}` : PROJECT);

/** The known key nearest to a misspelt one, if it is near enough to be what was meant. */
export function suggestion(key: string, known: readonly string[]): string | undefined {
    if (known.length === 0) return undefined;
    const lower = known.find((k) => k.toLowerCase() === key.toLowerCase());
    if (lower) return lower;
    const best = closest(key, [...known]);
    return distance(key, best) <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** "unknown key "nmespace" (did you mean `namespace`?)", or the list of known keys when nothing is near. */
export function unknownKeyProblem(path: readonly (string | number)[], key: string, known: readonly string[]): string {
    const near = suggestion(key, known);
    const hint = near ? `did you mean \`${near}\`?` : `known keys: ${[...known].sort().join(", ")}`;
    return `${keyName([...path, key])} is not a known key (${hint})`;
}


/** The keys a schema object knows, for suggestions (unwrapping defaults, optionals and pipes). */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
    let s: any = schema;
    for (const p of [...path, undefined]) {
        while (s?._zod?.def && !s._zod.def.shape && !s._zod.def.element) {
            const d = s._zod.def;
            s = d.innerType ?? d.in ?? d.schema;
            if (!s) return [];
        }
        if (p === undefined) break;
        s = typeof p === "number" ? s?._zod?.def?.element : s?._zod?.def?.shape?.[p as string];
    }
    return Object.keys(s?._zod?.def?.shape ?? {});
}

/** A rule's finding: the keys involved, each with what to say when it is the one to blame, and their values. */
export type Finding =
    | { readonly kind: "conflict"; readonly keys: readonly { path: readonly (string | number)[]; message: string; value: unknown }[] }
    | { readonly kind: "missing"; readonly path: readonly (string | number)[]; readonly message: string };

/**
 * The messages of a finding. A conflict names the keys the stack file sets, since those are the ones
 * the user changed; all of them when it sets none of them.
 */
export function findingMessages(raw: unknown, f: Finding): string[] {
    if (f.kind === "missing") return [`${keyName(f.path)} is missing: ${f.message}`];
    const set = f.keys.filter((k) => valueAt(raw, k.path) !== undefined);
    // A key without a value (a secret, whose value is never printed) is named alone.
    return (set.length ? set : f.keys).map((k) => `${keyName(k.path)}${k.value === undefined ? "" : ` = ${JSON.stringify(k.value)}`} is invalid: ${k.message}`);
}

/** One message per zod issue; `raw` is what the stack file set, `schema` the schema it was parsed with. */
export function describeIssue(raw: unknown, issue: z.core.$ZodIssue, schema: z.ZodType): string[] {
    const path = issue.path.map((p) => (typeof p === "symbol" ? String(p) : p));
    if (issue.code === "unrecognized_keys") {
        return issue.keys.map((k) => {
            const retired = RETIRED_KEYS[[...path, k].join(".")];
            if (retired) return `${keyName([...path, k])} = ${JSON.stringify(valueAt(raw, [...path, k]))} is no longer a key: ${retired}`;
            return unknownKeyProblem(path, k, knownKeys(schema, issue.path));
        });
    }
    const params = (issue as { params?: { blame?: Record<string, string>; base?: string; values?: Record<string, unknown>; missing?: boolean } }).params;
    if (params?.missing) return findingMessages(raw, { kind: "missing", path, message: issue.message });
    if (params?.blame && params.base) {
        const object = path.slice(0, path.length - params.base.split(".").length);
        const keys = Object.entries(params.blame).map(([rel, message]) => ({ path: [...object, ...rel.split(".")], message, value: params.values?.[rel] }));
        return findingMessages(raw, { kind: "conflict", keys });
    }
    let allowed = issue.message;
    if (issue.code === "invalid_value") allowed = `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    else if (issue.code === "invalid_type") allowed = issue.expected === "int" ? "must be a whole number" : `must be of type ${issue.expected}`;
    return [`${keyName(path)} = ${JSON.stringify(valueAt(raw, path))} is invalid: ${allowed}`];
}
