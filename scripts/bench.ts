// npm run bench [-- --rounds N --seconds S --clients 1,8,32 --dir DIR]
// Brings up the local platform (its own data directory) and the reference, plain `mlflow server` with
// its defaults, and runs the tracking benchmark (scripts/bench/tracking.ts) through the edge, straight to
// the platform's MLflow, and against the reference, rounds interleaved. Writes
// bench/results/<date>.json and .md and prints the table. Not part of `npm test` (a smoke spec is).
import * as fs from "fs";
import * as path from "path";
import { parseArgs } from "util";
import { ROOT } from "./lib/program";
import { LocalPlatform } from "./local/platform";
import { Supervisor } from "./local/supervisor";
import { startMlflowServer } from "./bench/reference";
import { benchTracking, markdownTable, Scenario, SCENARIOS } from "./bench/tracking";
import { machine, platformTargets } from "./bench/targets";
import { ensureWrk } from "./bench/wrk";
import { ensureLocalTools } from "./local/tools";

async function main(): Promise<number> {
    const { values } = parseArgs({
        options: {
            rounds: { type: "string", default: "3" },
            seconds: { type: "string", default: "20" },
            clients: { type: "string", default: "1,8,32" },
            scenarios: { type: "string", default: SCENARIOS.join(",") },
            dir: { type: "string", default: path.join(ROOT, ".local", "bench") },
        },
    });
    const log = (l: string) => console.log(`[bench] ${l}`);
    const tools = ensureLocalTools();
    const platform = await LocalPlatform.start({ dir: values.dir!, tools, serving: false, log });
    const supervisor = new Supervisor(path.join(values.dir!, "bench-logs"), path.join(values.dir!, "bench-pids"));
    try {
        const reference = await startMlflowServer({ mlflowVenv: tools.mlflowVenv, dir: path.join(values.dir!, "reference"), supervisor });
        const targets = [...platformTargets(platform), { name: "mlflow server defaults", url: reference.url }];
        const options = {
            scenarios: values.scenarios!.split(",") as Scenario[],
            clients: values.clients!.split(",").map(Number),
            rounds: Number(values.rounds),
            seconds: Number(values.seconds),
            warmupSeconds: 2,
            wrk: ensureWrk(),
            dir: values.dir!,
            log,
        };
        const results = await benchTracking(targets, options);
        const date = new Date().toISOString().slice(0, 10);
        const out = path.join(ROOT, "bench", "results");
        fs.mkdirSync(out, { recursive: true });
        const names = targets.map((t) => t.name);
        const table = markdownTable(results, names, "mlflow server defaults");
        fs.writeFileSync(path.join(out, `${date}.json`), JSON.stringify({ date, machine: machine(), options: { ...options, log: undefined }, results }, null, 2) + "\n");
        fs.writeFileSync(path.join(out, `${date}.md`), `# Tracking benchmark, ${date}\n\nMachine: ${JSON.stringify(machine())}\n\n${table}`);
        console.log(`\n${table}\nwritten to ${path.relative(ROOT, out)}/${date}.{json,md}`);
        return 0;
    } finally {
        await supervisor.stopAll();
        await platform.stop();
    }
}

main().then((code) => process.exit(code), (e) => {
    console.error(`npm run bench: ${(e as Error).message}`);
    process.exit(1);
});
