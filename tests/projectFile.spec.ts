import assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { platformSchema as configSchema, SECRET_KEYS } from "../stacks/schema";

const ROOT = path.resolve(__dirname, "..");
const projectText = fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8");

/** Every config key the program reads, with nested fields as `key.field`. */
function configKeys(): string[] {
    const keys: string[] = [...SECRET_KEYS];
    for (const [key, schema] of Object.entries(configSchema.shape)) {
        keys.push(key);
        let inner: any = schema;
        while (inner?.def?.innerType) inner = inner.def.innerType;
        if (inner?.shape) for (const field of Object.keys(inner.shape)) keys.push(`${key}.${field}`);
    }
    return keys;
}

describe("Pulumi.yaml", () => {
    it("names the project mlflow-platform on the nodejs runtime", () => {
        const project = parse(projectText);
        assert.equal(project.name, "mlflow-platform");
        assert.equal(project.runtime.name, "nodejs");
    });

    it("documents every config key the program reads in its config block", () => {
        const configBlock = projectText.slice(projectText.indexOf("\nconfig:"));
        const keys = configKeys();
        assert.ok(keys.length > 30);
        for (const key of keys) assert.match(configBlock, new RegExp(`(^|[\\s,])${key.replace(".", "\\.")}[\\s:,(]`, "m"), `${key} is not documented`);
    });

    it("declares only types Pulumi accepts (string, integer, boolean, array)", () => {
        for (const [key, decl] of Object.entries<any>(parse(projectText).config)) {
            if (decl && typeof decl === "object") assert.ok(["string", "integer", "boolean", "array"].includes(decl.type), key);
        }
    });

    it("stack files only set keys the program knows", () => {
        const known = new Set(configKeys().filter((k) => !k.includes(".")).map((k) => `mlflow-platform:${k}`));
        for (const stack of ["dev", "staging", "prod"]) {
            const config = parse(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8")).config;
            for (const key of Object.keys(config)) assert.ok(known.has(key) || key.startsWith("kubernetes:"), `${stack}: unknown key ${key}`);
        }
    });
});
