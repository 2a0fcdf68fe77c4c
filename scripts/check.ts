// npm run check -- --stack <dev|staging|prod> [--kubernetes-version 1.34.0] [--keep DIR] [--only CHECKER]
//                  [--allow-missing] [--waivers FILE] [--stack-dir DIR]
// Renders the stack offline (the same code path as `npm run render`, secrets redacted), then runs the
// trusted checkers on it: kubeconform (strict, offline schemas), kube-score, kube-linter (every check,
// .kube-linter.yaml) and checkov (Kubernetes framework). The tools are installed on first use by
// scripts/tools/install-checkers.sh into ~/.cache/mlflow-platform. Prints one table, then every finding
// that WAIVERS.md does not cover.
// Exit code: 0 all clear; 1 unwaived findings, or a checker that could not run (unless --allow-missing);
// 2 usage or render error.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parseArgs } from "util";
import { ConfigError } from "../stacks/config";
import {
    CHECKERS, CheckerName, DEFAULT_KUBERNETES_VERSION, installTools, judge, parseWaivers, runCheckers,
} from "./lib/checkers";
import { toKubeObjects, writeManifests } from "./lib/manifests";
import { ROOT, runProgram } from "./lib/program";

const USAGE = "usage: npm run check -- --stack <dev|staging|prod> [--kubernetes-version X.Y.Z] [--keep DIR] " +
    "[--only kubeconform|kube-score|kube-linter|checkov ...] [--allow-missing] [--waivers FILE] [--stack-dir DIR]";

async function main(): Promise<number> {
    let values;
    try {
        ({ values } = parseArgs({
            options: {
                stack: { type: "string" },
                "kubernetes-version": { type: "string", default: DEFAULT_KUBERNETES_VERSION },
                /** Keep the checked manifests in DIR instead of a temporary directory. */
                keep: { type: "string" },
                only: { type: "string", multiple: true },
                /** Report a checker that cannot be installed on this machine as NOT RUN without failing. */
                "allow-missing": { type: "boolean", default: false },
                waivers: { type: "string", default: path.join(ROOT, "WAIVERS.md") },
                "stack-dir": { type: "string" },
            },
        }));
    } catch (e) {
        console.error(`${(e as Error).message}\n${USAGE}`);
        return 2;
    }
    if (!values.stack) {
        console.error(USAGE);
        return 2;
    }
    const only = values.only as CheckerName[] | undefined;
    const bad = (only ?? []).filter((c) => !(CHECKERS as readonly string[]).includes(c));
    if (bad.length) {
        console.error(`unknown checker ${bad.join(", ")}\n${USAGE}`);
        return 2;
    }
    const waivers = parseWaivers(fs.readFileSync(values.waivers!, "utf8"));

    const started = Date.now();
    const tools = installTools();
    const installed = Date.now();

    let objects;
    try {
        const run = await runProgram(values.stack, { stackDir: values["stack-dir"] });
        objects = toKubeObjects(run.resources, false);
    } catch (e) {
        const err = e instanceof ConfigError || (e as Error)?.name === "ConfigError" ? (e as Error).message : String((e as Error)?.stack ?? e);
        console.error(`render of stack ${values.stack} failed: ${err}`);
        return 2;
    }
    const dir = values.keep ? path.resolve(values.keep) : fs.mkdtempSync(path.join(os.tmpdir(), `mlflow-check-${values.stack}-`));
    if (values.keep) fs.rmSync(dir, { recursive: true, force: true });
    const index = writeManifests(objects, dir);

    const runs = await runCheckers(dir, tools, index, { kubernetesVersion: values["kubernetes-version"], only });
    if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
    const verdict = judge(runs, waivers, values.stack);

    const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    console.log(`\nstack ${values.stack}: ${objects.length} objects, Kubernetes ${values["kubernetes-version"]}` +
        ` (tools ready in ${secs(installed - started)}, checks in ${secs(Date.now() - installed)})` +
        (values.keep ? `; manifests kept in ${path.relative(process.cwd(), dir) || "."}` : ""));
    console.log(verdict.table);

    if (verdict.unwaived.length) {
        console.log(`\n${verdict.unwaived.length} finding(s) not waived in ${path.relative(process.cwd(), values.waivers!)}:`);
        for (const f of verdict.unwaived) console.log(`  ✗ ${f.checker} ${f.check} ${f.object}: ${f.message}`);
    }
    for (const r of verdict.notRun) console.log(`\n  ! ${r.checker} did not run: ${r.notRun}`);
    if (verdict.unusedWaivers.length) {
        console.log(`\nwaivers that matched nothing in stack ${values.stack} (fine if they apply to another stack):`);
        for (const w of verdict.unusedWaivers) console.log(`  - WAIVERS.md:${w.line} ${w.checker} ${w.check} ${w.object}`);
    }

    const missingFails = verdict.notRun.length > 0 && !values["allow-missing"];
    if (verdict.unwaived.length === 0 && !missingFails) {
        console.log(`\ncheck passed: no unwaived findings${verdict.notRun.length ? ` (not run: ${verdict.notRun.map((r) => r.checker).join(", ")}; --allow-missing)` : ""}`);
        return 0;
    }
    if (missingFails) console.log(`\ncheck failed: ${verdict.notRun.map((r) => r.checker).join(", ")} could not run (pass --allow-missing to report that without failing)`);
    else console.log(`\ncheck failed: ${verdict.unwaived.length} unwaived finding(s)`);
    return 1;
}

main().then((code) => process.exit(code), (e) => {
    console.error(e);
    process.exit(2);
});
