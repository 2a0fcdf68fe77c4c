// npm run local [-- --stack dev] [--stack-dir DIR] [--dir .local] [--no-serving]
// Brings the stack up on this machine from its rendered manifests, as processes on 127.0.0.1, prints
// where to log in, and stops everything it started on Ctrl-C or SIGTERM (npm runs it with `exec`, so a
// signal sent to npm's PID reaches it). Data stays in the directory for next time.
import * as path from "path";
import { parseArgs } from "util";
import { ROOT } from "./lib/program";
import { LocalPlatform } from "./local/platform";

const USAGE = "usage: npm run local [-- --stack <dev|staging|prod>] [--stack-dir DIR] [--dir DIR] [--no-serving]";

async function main(): Promise<number> {
    const { values } = parseArgs({
        options: {
            stack: { type: "string", default: "dev" },
            "stack-dir": { type: "string" },
            dir: { type: "string", default: path.join(ROOT, ".local") },
            "no-serving": { type: "boolean", default: false },
            help: { type: "boolean", default: false },
        },
    });
    if (values.help) {
        console.log(USAGE);
        return 0;
    }
    const started = Date.now();
    const log = (line: string) => console.log(`[local] ${line}`);
    // Signals are handled from the start: Ctrl-C while starting stops what was already started.
    const interrupt = new AbortController();
    const signalled = new Promise<string>((resolve) => {
        for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, () => {
            if (!interrupt.signal.aborted) console.log(`\n[local] ${s}: stopping…`);
            interrupt.abort();
            resolve(s);
        });
    });
    let p: LocalPlatform;
    try {
        p = await LocalPlatform.start({ stack: values.stack!, stackDir: values["stack-dir"], dir: values.dir!, serving: values["no-serving"] ? false : undefined, log, signal: interrupt.signal });
    } catch (e) {
        console.error(`npm run local: ${(e as Error).message}`);
        return interrupt.signal.aborted ? 130 : 1;
    }
    const { user, password } = p.login;
    console.log(
        [
            "",
            `MLflow is up (stack ${values.stack}, ${Math.round((Date.now() - started) / 1000)} s), data in ${path.relative(process.cwd(), values.dir!) || "."}:`,
            `  UI and API  ${p.uiUrl}   user ${user}   password ${password}`,
            `  Prometheus  ${p.prometheusUrl}`,
            `  Kubernetes  ${p.cluster!.server}   ${p.cluster!.kubectl} --kubeconfig ${p.cluster!.kubeconfig} get pods,jobs,inferenceservices -n ${p.stack.namespace}`,
            `  logs        ${p.layout.logs}`,
            "",
            "  Log a model from another terminal:",
            `    export MLFLOW_TRACKING_URI=${p.uiUrl} MLFLOW_TRACKING_USERNAME=${user} MLFLOW_TRACKING_PASSWORD='${password}'`,
            `    ${path.join(p.tools.mlflowVenv, "bin", "python")} examples/train_wine.py`,
            p.followed.length ? `  The deploy controller follows ${p.followed.join(", ")} into the InferenceService.` : "",
            p.followed.length && p.serving ? "  MLServer serves the version the alias points at (its URL is printed here when ready)." : "",
            "",
            `Ctrl-C (or kill -TERM ${process.pid}) stops everything.`,
        ].join("\n"),
    );
    await signalled;
    await p.stop();
    console.log("[local] stopped");
    return 0;
}

main().then((code) => process.exit(code), (e) => {
    console.error(e);
    process.exit(1);
});
