// Pulumi.yaml and the README's configuration table are generated from the config schemas (npm run
// docs); these specs fail when either drifts, and hold the project file to what the CLI accepts.
import assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { configRows, readmeTable, withPulumiYamlConfig, withReadmeTable } from "../../scripts/lib/configDocs";
import { platformSchema, SECRET_KEYS } from "../../stacks/schema";

import { ROOT } from "../harness";
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");

describe("the configuration reference", () => {
    it("Pulumi.yaml's config block is what the schemas generate (run `npm run docs`)", () => {
        assert.equal(read("Pulumi.yaml"), withPulumiYamlConfig(read("Pulumi.yaml")));
    });

    it("the README's configuration table is what the schemas generate (run `npm run docs`)", () => {
        assert.equal(read("README.md"), withReadmeTable(read("README.md")));
    });

    it("lists every key of every slice, each with a description, and every secret", () => {
        const keys = configRows().map((r) => r.key);
        for (const [slice, schema] of Object.entries(platformSchema.shape)) {
            assert.ok(keys.some((k) => k === slice || k.startsWith(`${slice}.`)), `${slice} is not documented`);
            let inner: any = schema;
            while (inner?._zod?.def && !inner._zod.def.shape) inner = inner._zod.def.innerType ?? inner._zod.def.in;
            for (const field of Object.keys(inner?._zod?.def?.shape ?? {})) assert.ok(keys.some((k) => k === `${slice}.${field}` || k.startsWith(`${slice}.${field}.`)), `${slice}.${field} is not documented`);
        }
        for (const key of SECRET_KEYS) assert.ok(keys.includes(key), key);
        assert.ok(configRows().every((r) => r.description.length > 5));
    });

    it("the drift check has teeth: a changed default shows up in the generated files", () => {
        const rows = configRows().map((r) => (r.key === "tracking.workers" ? { ...r, default: "`3`" } : r));
        assert.notEqual(withReadmeTable(read("README.md"), readmeTable(rows)), read("README.md"));
    });
});

describe("Pulumi.yaml", () => {
    const project = parse(read("Pulumi.yaml"));

    it("names the project mlflow-platform on the nodejs runtime", () => {
        assert.equal(project.name, "mlflow-platform");
        assert.equal(project.runtime.name, "nodejs");
    });

    it("declares only types Pulumi accepts (string, integer, boolean, array)", () => {
        for (const [key, decl] of Object.entries<any>(project.config)) assert.ok(["string", "integer", "boolean", "array"].includes(decl.type), key);
    });
});
