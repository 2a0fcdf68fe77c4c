// Validates custom resources against the openAPIV3Schema of their pinned CRD with ajv, strictly:
// like kubeconform's strict mode, an object schema that lists properties rejects unknown ones (the API
// server would silently prune them, which hides typos such as `storageURI`).
import * as fs from "fs";
import * as path from "path";
import Ajv, { ValidateFunction } from "ajv";
import YAML from "yaml";
import { strictCrdSchema } from "./checkersSchemas";
import { ROOT } from "./program";

/** Where the pinned KServe CRDs (`serving.kserve.io_<plural>.yaml`) live. */
export const CRD_DIR = path.join(ROOT, "crds", "kserve");

const PLURALS: Record<string, string> = {
    InferenceService: "inferenceservices",
    ServingRuntime: "servingruntimes",
    ClusterServingRuntime: "clusterservingruntimes",
};

export function crdFile(kind: string): string {
    const plural = PLURALS[kind];
    if (!plural) throw new Error(`no pinned CRD for kind ${kind}`);
    const file = path.join(CRD_DIR, `serving.kserve.io_${plural}.yaml`);
    if (!fs.existsSync(file)) throw new Error(`pinned CRD ${file} is missing`);
    return file;
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
    const validate = ajv.compile(strictCrdSchema(served.schema.openAPIV3Schema));
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
