// Turns the resources recorded by the mock runtime into the Kubernetes objects Pulumi would apply.
import * as fs from "fs";
import * as path from "path";
import { stringify } from "yaml";
import { isSecretValue, Registered } from "./mockRuntime";

export const REDACTED = "<redacted: secret>";

export interface KubeObject {
    apiVersion: string;
    kind: string;
    metadata: { name: string; namespace?: string; [k: string]: unknown };
    [k: string]: unknown;
}

/** `kubernetes:apps/v1:Deployment` → { apiVersion: "apps/v1", kind: "Deployment" }; core is `v1`. */
export function parseKubeType(type: string): { apiVersion: string; kind: string } | undefined {
    const m = /^kubernetes:([^:]+):([A-Za-z]+)$/.exec(type);
    if (!m || m[1].startsWith("helm.sh/") || m[1] === "yaml/v2") return undefined;
    return { apiVersion: m[1].replace(/^core\//, ""), kind: m[2] };
}

/** Replaces every secret value with REDACTED (keeping object keys), or unwraps it with showSecrets. */
export function redact(value: unknown, showSecrets: boolean): unknown {
    if (isSecretValue(value)) {
        if (showSecrets) return redact(value.value, true);
        const inner = value.value;
        if (inner && typeof inner === "object" && !Array.isArray(inner)) {
            return Object.fromEntries(Object.keys(inner).map((k) => [k, REDACTED]));
        }
        return REDACTED;
    }
    if (Array.isArray(value)) return value.map((v) => redact(v, showSecrets));
    if (value && typeof value === "object") {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, showSecrets)]));
    }
    return value;
}

/** The Kubernetes objects among the registered resources, in registration order. */
export function toKubeObjects(resources: Registered[], showSecrets = false): KubeObject[] {
    const objects: KubeObject[] = [];
    for (const r of resources) {
        const kube = r.custom ? parseKubeType(r.type) : undefined;
        if (!kube) continue;
        const body = redact(r.inputs, showSecrets) as Record<string, any>;
        const metadata = { ...(body.metadata ?? {}), name: body.metadata?.name ?? r.name };
        objects.push({ ...body, apiVersion: kube.apiVersion, kind: kube.kind, metadata });
    }
    return objects;
}

/** `<kind>-<name>.yaml`, lower-case kind, as `npm run render` names its files. */
export const manifestFileName = (o: KubeObject): string => `${o.kind.toLowerCase()}-${o.metadata.name}.yaml`;

/**
 * How manifests are written: YAML 1.1, as kubectl and most checkers parse it (so `off`/`on` strings are
 * quoted instead of turning into booleans), keys sorted, long strings never folded.
 */
export const MANIFEST_YAML = { version: "1.1", sortMapEntries: true, lineWidth: 0 } as const;

/**
 * Writes one YAML file per object into `dir` (`manifestFileName`), and returns file → `Kind/name`.
 * `fresh` empties the directory first; `private` makes it owner-only (secrets shown). YAML 1.1 output
 * on purpose (MANIFEST_YAML): the checkers parse YAML 1.1 (Go's yaml.v2 via sigs.k8s.io/yaml, PyYAML),
 * where unquoted `off`, `yes` or `on` are booleans, so such strings must be quoted to reach them as
 * the strings Pulumi sends to the API server.
 */
export function writeManifests(objects: KubeObject[], dir: string, o: { fresh?: boolean; private?: boolean } = {}): Map<string, string> {
    if (o.fresh) fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, ...(o.private ? { mode: 0o700 } : {}) });
    const index = new Map<string, string>();
    for (const obj of objects) {
        const file = path.join(dir, manifestFileName(obj));
        fs.writeFileSync(file, stringify(obj, MANIFEST_YAML), o.private ? { mode: 0o600 } : {});
        index.set(file, `${obj.kind}/${obj.metadata.name}`);
    }
    return index;
}
