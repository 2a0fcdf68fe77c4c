// Validates custom resources against the openAPIV3Schema of their pinned CRD with ajv, strictly:
// like kubeconform's strict mode, an object schema that lists properties rejects unknown ones (the API
// server would silently prune them, which hides typos such as `storageURI`).
import * as fs from "fs";
import * as path from "path";
import Ajv, { ValidateFunction } from "ajv";
import YAML from "yaml";

const ROOT = path.resolve(__dirname, "..", "..");

/**
 * Directories searched for `serving.kserve.io_<plural>.yaml`, first hit wins: a repo-level `crds/`
 * (kserve/ or flat), the copies pinned beside these tests, then the shared crds/ beside the clone.
 */
export const CRD_DIRS = [
    path.join(ROOT, "crds", "kserve"),
    path.join(ROOT, "crds"),
    path.join(ROOT, "..", "shared", "crds", "kserve"),
];

const PLURALS: Record<string, string> = {
    InferenceService: "inferenceservices",
    ServingRuntime: "servingruntimes",
    ClusterServingRuntime: "clusterservingruntimes",
};

export function crdFile(kind: string): string {
    const plural = PLURALS[kind];
    if (!plural) throw new Error(`no pinned CRD for kind ${kind}`);
    const file = `serving.kserve.io_${plural}.yaml`;
    for (const dir of CRD_DIRS) {
        const candidate = path.join(dir, file);
        if (fs.existsSync(candidate)) return candidate;
    }
    throw new Error(`CRD ${file} not found in ${CRD_DIRS.join(", ")}`);
}

/** Adds `additionalProperties: false` to every object schema that lists properties and does not preserve unknown fields. */
export function strictSchema(schema: any): any {
    if (Array.isArray(schema)) return schema.map(strictSchema);
    if (typeof schema !== "object" || schema === null) return schema;
    const out: any = {};
    for (const [k, v] of Object.entries(schema)) {
        // `properties` maps names to schemas; recurse into each schema, never treat the map as one.
        out[k] =
            k === "properties"
                ? Object.fromEntries(Object.entries(v as object).map(([p, s]) => [p, strictSchema(s)]))
                : strictSchema(v);
    }
    if (out.properties && out.additionalProperties === undefined && !out["x-kubernetes-preserve-unknown-fields"]) {
        out.additionalProperties = false;
    }
    return out;
}

const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
const cache = new Map<string, ValidateFunction>();

function validatorFor(apiVersion: string, kind: string): ValidateFunction {
    const key = `${apiVersion}/${kind}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const crd = YAML.parse(fs.readFileSync(crdFile(kind), "utf8"));
    if (crd.spec.names.kind !== kind) throw new Error(`${crdFile(kind)} defines ${crd.spec.names.kind}, not ${kind}`);
    const [group, version] = apiVersion.split("/");
    if (group !== crd.spec.group) throw new Error(`${kind}: apiVersion ${apiVersion} is not in group ${crd.spec.group}`);
    const served = crd.spec.versions.find((v: any) => v.name === version && v.served);
    if (!served) throw new Error(`${kind}: version ${version} is not served by the pinned CRD`);
    const validate = ajv.compile(strictSchema(served.schema.openAPIV3Schema));
    cache.set(key, validate);
    return validate;
}

/** Schema errors of one custom resource (`{apiVersion, kind, metadata, spec}`); empty when valid. */
export function crdErrors(obj: { apiVersion: string; kind: string; [k: string]: unknown }): string[] {
    const { apiVersion, kind } = obj;
    const validate = validatorFor(apiVersion, kind);
    if (validate(obj)) return [];
    return (validate.errors ?? []).map((e) => {
        const extra = e.keyword === "additionalProperties" ? ` (${(e.params as any).additionalProperty})` : "";
        return `${kind} ${e.instancePath || "/"}: ${e.message}${extra}`;
    });
}
