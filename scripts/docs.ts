// npm run docs [-- --check]: writes the configuration reference generated from the schemas into
// Pulumi.yaml (its config: block) and README.md (between the config-table markers); --check only
// reports whether they are up to date (exit 1 when not).
import * as fs from "fs";
import * as path from "path";
import { withPulumiYamlConfig, withReadmeTable } from "./lib/configDocs";

const ROOT = path.resolve(__dirname, "..");
const files: [string, (text: string) => string][] = [
    [path.join(ROOT, "Pulumi.yaml"), (t) => withPulumiYamlConfig(t)],
    [path.join(ROOT, "README.md"), (t) => withReadmeTable(t)],
];
const check = process.argv.includes("--check");
let stale = 0;
for (const [file, generate] of files) {
    const text = fs.readFileSync(file, "utf8");
    const next = generate(text);
    if (next === text) continue;
    stale++;
    if (check) console.error(`${path.relative(ROOT, file)} is out of date with the config schemas: run \`npm run docs\``);
    else fs.writeFileSync(file, next);
}
if (!check) console.log(stale ? `updated ${stale} file(s)` : "up to date");
process.exit(check && stale ? 1 : 0);
