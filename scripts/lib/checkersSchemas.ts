// Offline JSON schemas for kubeconform, generated on first use into <cache>/schemas/v<k8s version>/.
//
// kubeconform reads its schemas from GitHub by default, which is not reachable where this project is
// built. So the schemas come from two registry packages instead:
//   - Kubernetes built-in kinds: the PyPI wheel `kubernetes-validate` (downloaded, not installed, by
//     scripts/tools/install-checkers.sh). It ships the Kubernetes OpenAPI of each minor converted to
//     strict JSON schemas (`additionalProperties: false` everywhere), with references into one shared
//     `_definitions.json`. Each kind is rewritten here as a standalone file (the definitions it uses are
//     copied into its own `$defs`), named the way kubeconform looks it up:
//     `v1.34.0-standalone-strict/deployment-apps-v1.json`.
//   - Custom kinds: every CustomResourceDefinition in the CRD YAML files given (KServe's pinned copies in
//     crds/, prometheus-operator's from its Go module). Each served version's `openAPIV3Schema` becomes
//     `crds/<group>/<kind>_<version>.json`, made strict the way kubeconform's own openapi2jsonschema.py
//     does it: every object schema that lists properties and does not preserve unknown fields gets
//     `additionalProperties: false`.
// A stamp (sources.json) records the inputs; the schemas are regenerated when they change.
import { spawnSync } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { parseAllDocuments } from "yaml";

export interface SchemaInputs {
    /** The kubernetes-validate wheel. */
    wheel: string;
    /** Kubernetes version to validate against, e.g. "1.34.0". */
    kubernetesVersion: string;
    /** YAML files that may hold CustomResourceDefinitions. */
    crdFiles: string[];
}

export interface SchemaSet {
    dir: string;
    /** kubeconform -schema-location templates, in lookup order. */
    locations: string[];
    /** `group/version/Kind` of every custom kind that has a schema. */
    customKinds: string[];
}

const normalize = (v: string): string => `v${v.replace(/^v/, "")}`;

/** kubeconform's file name for a kind: lower-case kind, first label of the group, version. */
export function kindFileName(group: string, version: string, kind: string): string {
    const g = group ? `-${group.split(".")[0].toLowerCase()}` : "";
    return `${kind.toLowerCase()}${g}-${version}.json`;
}

/** Reads the `<ver>-local-strict` directory of the wheel: { file name → parsed JSON }. */
function readWheelSchemas(wheel: string, version: string): Record<string, any> {
    const prefix = `kubernetes_validate/kubernetes-json-schema/${version}-local-strict/`;
    const py = [
        "import json, sys, zipfile",
        "z = zipfile.ZipFile(sys.argv[1]); p = sys.argv[2]",
        "out = {n[len(p):]: json.loads(z.read(n)) for n in z.namelist() if n.startswith(p) and n.endswith('.json')}",
        "json.dump(out, sys.stdout)",
    ].join("\n");
    const r = spawnSync("python3", ["-c", py, wheel, prefix], { encoding: "utf8", maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`cannot read ${wheel}: ${r.stderr || r.error}`);
    const files = JSON.parse(r.stdout) as Record<string, any>;
    if (!files["_definitions.json"]) {
        throw new Error(`${path.basename(wheel)} has no schemas for Kubernetes ${version} (no ${prefix}_definitions.json)`);
    }
    return files;
}

const DEF_REF = /^(?:\/api\/_definitions\.json|_definitions\.json)?#\/\$defs\/(.+)$/;

/** A kind schema with every definition it reaches copied into its own `$defs`, refs made local. */
export function standaloneSchema(kindSchema: any, defs: Record<string, any>): any {
    const used = new Set<string>();
    const rewrite = (node: any): any => {
        if (Array.isArray(node)) return node.map(rewrite);
        if (!node || typeof node !== "object") return node;
        const outNode: Record<string, any> = {};
        for (const [k, v] of Object.entries(node)) {
            if (k === "$ref" && typeof v === "string") {
                const m = DEF_REF.exec(v);
                if (!m) throw new Error(`unexpected $ref ${v}`);
                if (!used.has(m[1])) {
                    used.add(m[1]);
                    if (!defs[m[1]]) throw new Error(`missing definition ${m[1]}`);
                    queue.push(m[1]);
                }
                outNode[k] = `#/$defs/${m[1]}`;
            } else {
                outNode[k] = rewrite(v);
            }
        }
        return outNode;
    };
    const queue: string[] = [];
    const { $id: _id, ...root } = kindSchema;
    const result = rewrite(root);
    const outDefs: Record<string, any> = {};
    while (queue.length) {
        const name = queue.shift()!;
        outDefs[name] = rewrite(defs[name]);
    }
    return { ...result, $defs: outDefs };
}

/** Makes a CRD's openAPIV3Schema strict, as kubeconform's openapi2jsonschema.py does. */
export function strictCrdSchema(node: any): any {
    if (Array.isArray(node)) return node.map(strictCrdSchema);
    if (!node || typeof node !== "object") return node;
    const out: Record<string, any> = {};
    for (const [k, v] of Object.entries(node)) {
        // `properties` and the like map names to schemas: recurse into each schema, not the map itself.
        if ((k === "properties" || k === "patternProperties" || k === "definitions") && v && typeof v === "object") {
            out[k] = Object.fromEntries(Object.entries(v).map(([n, s]) => [n, strictCrdSchema(s)]));
        } else {
            out[k] = strictCrdSchema(v);
        }
    }
    if (out.properties && out.additionalProperties === undefined && out["x-kubernetes-preserve-unknown-fields"] !== true) {
        out.additionalProperties = false;
    }
    if (out.nullable === true && typeof out.type === "string") out.type = [out.type, "null"];
    return out;
}

/** { relative path → schema } for every served version of every CRD in the files. */
export function crdSchemas(files: string[]): { schemas: Record<string, any>; kinds: string[] } {
    const schemas: Record<string, any> = {};
    const kinds: string[] = [];
    for (const file of files) {
        for (const doc of parseAllDocuments(fs.readFileSync(file, "utf8"))) {
            const crd = doc.toJS() as any;
            if (crd?.kind !== "CustomResourceDefinition") continue;
            const group: string = crd.spec.group;
            const kind: string = crd.spec.names.kind;
            for (const v of crd.spec.versions ?? []) {
                const schema = v.schema?.openAPIV3Schema;
                if (!schema) continue;
                schemas[`crds/${group}/${kind.toLowerCase()}_${v.name}.json`] = strictCrdSchema(schema);
                kinds.push(`${group}/${v.name}/${kind}`);
            }
        }
    }
    return { schemas, kinds };
}

function stampOf(inputs: SchemaInputs): string {
    const h = createHash("sha256");
    h.update(`generator 1\n${path.basename(inputs.wheel)} ${fs.statSync(inputs.wheel).size}\n${inputs.kubernetesVersion}\n`);
    for (const f of [...inputs.crdFiles].sort()) h.update(`${f}\n`).update(fs.readFileSync(f));
    return h.digest("hex");
}

/** Generates the schemas unless the cache already holds them for the same inputs. */
export function ensureSchemas(cacheDir: string, inputs: SchemaInputs): SchemaSet {
    const version = normalize(inputs.kubernetesVersion);
    const dir = path.join(cacheDir, "schemas", version);
    const stampFile = path.join(dir, "sources.json");
    const stamp = stampOf(inputs);
    const locations = [
        path.join(dir, "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}", "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
        path.join(dir, "crds", "{{ .Group }}", "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"),
    ];
    if (fs.existsSync(stampFile)) {
        const old = JSON.parse(fs.readFileSync(stampFile, "utf8"));
        if (old.stamp === stamp) return { dir, locations, customKinds: old.customKinds };
    }
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    const builtin = path.join(tmp, `${version}-standalone-strict`);
    fs.mkdirSync(builtin, { recursive: true });
    const files = readWheelSchemas(inputs.wheel, version);
    const defs = files["_definitions.json"].$defs as Record<string, any>;
    for (const [name, schema] of Object.entries(files)) {
        const gvks = schema["x-kubernetes-group-version-kind"] as { group: string; version: string; kind: string }[] | undefined;
        if (!gvks || name === "_definitions.json" || name === "all.json") continue;
        const standalone = standaloneSchema(schema, defs);
        for (const g of gvks) fs.writeFileSync(path.join(builtin, kindFileName(g.group, g.version, g.kind)), JSON.stringify(standalone));
    }
    const { schemas, kinds } = crdSchemas(inputs.crdFiles);
    for (const [rel, schema] of Object.entries(schemas)) {
        fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
        fs.writeFileSync(path.join(tmp, rel), JSON.stringify(schema));
    }
    fs.writeFileSync(path.join(tmp, "sources.json"), JSON.stringify({
        stamp,
        kubernetesVersion: version,
        builtin: path.basename(inputs.wheel),
        crdFiles: inputs.crdFiles,
        customKinds: kinds,
    }, null, 2));
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
    return { dir, locations, customKinds: kinds };
}
