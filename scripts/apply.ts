// npm run apply -- --stack <dev|staging|prod> --kubeconfig FILE [--dry-run | --wait] [--stack-dir DIR] [--seed S] [--json]
// Renders the stack offline (as `npm run render` does, secrets shown: they go to the API server, not to
// disk) and applies it to the cluster of FILE the way `pulumi up` would (scripts/cluster/apply.ts):
// the pinned CRDs first (all of them), then every object server-side applied in the program's dependency order with
// the Pulumi provider's field manager and strict field validation. --dry-run applies with dryRun=All
// (only the Namespaces are created); --wait applies each object once what it waits for is ready, by the
// provider's readiness rules (scripts/cluster/readiness.ts), as `pulumi up` does on a cluster that runs
// the pods. Exit 1 names the refused object and quotes the server.
import { parseArgs } from "util";
import { ConfigError } from "../stacks/config";
import { applyOrder } from "./cluster/applyOrder";
import { runProgram } from "./lib/program";
import { ApplyError, applyObjects, crdFiles, installCrds } from "./cluster/apply";
import { KubeClient, readKubeconfig } from "./cluster/kubeClient";

const USAGE = "usage: npm run apply -- --stack <dev|staging|prod> --kubeconfig FILE [--dry-run | --wait] [--stack-dir DIR] [--seed SEED] [--json]";

async function main(): Promise<number> {
    const { values } = parseArgs({
        options: {
            stack: { type: "string" },
            kubeconfig: { type: "string" },
            "dry-run": { type: "boolean", default: false },
            wait: { type: "boolean", default: false },
            "stack-dir": { type: "string" },
            seed: { type: "string" },
            /** Prints the report (order, field managers, warnings, timings) as JSON on stdout. */
            json: { type: "boolean", default: false },
        },
    });
    if (!values.stack || !values.kubeconfig || (values.wait && values["dry-run"])) {
        console.error(USAGE);
        return 2;
    }
    const t0 = Date.now();
    let ordered;
    try {
        const run = await runProgram(values.stack, { seed: values.seed, stackDir: values["stack-dir"] });
        ordered = applyOrder(run.resources, true);
    } catch (e) {
        const err = e instanceof ConfigError || (e as Error)?.name === "ConfigError" ? (e as Error).message : String((e as Error)?.stack ?? e);
        console.error(`render of stack ${values.stack} failed: ${err}`);
        return 1;
    }
    const renderMs = Date.now() - t0;
    const client = new KubeClient(readKubeconfig(values.kubeconfig));
    const log = (l: string) => console.error(`apply ${values.stack}: ${l}`);
    try {
        const t1 = Date.now();
        const crds = await installCrds(client, crdFiles());
        const crdMs = Date.now() - t1;
        log(`${crds.length} CRD(s) established in ${crdMs} ms`);
        const report = await applyObjects(client, ordered, { dryRun: values["dry-run"], await: values.wait, log });
        for (const w of report.warnings) log(`warning on ${w.object}: ${w.warning}`);
        if (values.json) {
            console.log(JSON.stringify({ stack: values.stack, dryRun: values["dry-run"], renderMs, crdMs, crds, ...report, order: ordered.map((x) => ({ urn: x.urn, waitsFor: x.waitsFor })) }));
        }
        return 0;
    } catch (e) {
        if (e instanceof ApplyError) {
            console.error(`apply of stack ${values.stack} failed: ${e.message}`);
            return 1;
        }
        throw e;
    } finally {
        client.close();
    }
}

main().then((code) => process.exit(code), (e) => {
    console.error(e);
    process.exit(1);
});
