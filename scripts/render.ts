// npm run render -- --stack <dev|staging|prod> [--out DIR] [--show-secrets] [--seed S] [--stack-dir DIR]
// Runs the program offline under the mock runtime and writes every Kubernetes object as YAML.
import * as path from "path";
import { parseArgs } from "util";
import { ConfigError } from "../stacks/config";
import { toKubeObjects, writeManifests } from "./lib/manifests";
import { ROOT, runProgram } from "./lib/program";

const USAGE = "usage: npm run render -- --stack <dev|staging|prod> [--out DIR] [--show-secrets] [--seed SEED] [--stack-dir DIR]";

async function main(): Promise<number> {
    const { values } = parseArgs({
        options: {
            stack: { type: "string" },
            out: { type: "string" },
            "show-secrets": { type: "boolean", default: false },
            /** Generated passwords derive from the seed: the same seed renders the same credentials. */
            seed: { type: "string" },
            /** Where Pulumi.<stack>.yaml lives; defaults to the project root. */
            "stack-dir": { type: "string" },
        },
    });
    if (!values.stack) {
        console.error(USAGE);
        return 2;
    }
    const outDir = path.resolve(values.out ?? path.join(ROOT, "rendered", values.stack));
    let objects;
    try {
        const run = await runProgram(values.stack, { seed: values.seed, stackDir: values["stack-dir"] });
        objects = toKubeObjects(run.resources, values["show-secrets"]);
    } catch (e) {
        const err = e instanceof ConfigError || (e as Error)?.name === "ConfigError" ? (e as Error).message : String((e as Error)?.stack ?? e);
        console.error(`render of stack ${values.stack} failed: ${err}`);
        return 1;
    }
    writeManifests(objects, outDir, { fresh: true });
    const note = values["show-secrets"] ? "secret values shown" : "secret values redacted";
    console.log(`rendered ${objects.length} objects of stack ${values.stack} to ${path.relative(process.cwd(), outDir) || "."} (${note})`);
    return 0;
}

main().then((code) => process.exit(code), (e) => {
    console.error(e);
    process.exit(1);
});
