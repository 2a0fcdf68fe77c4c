// (11u) An MLflow upgrade through the platform's own path, as a user makes it: `npm run local` of the dev
// stack on the oldest supported MLflow (MLFLOW_PREVIOUS_VERSION, its own data directory e2e-upgrade under
// e2eDataRoot(); the shared platform of the other specs is not touched), seeded by that version's own
// client; then the stack's pinned image on a restart of the same directory, which applies what changed as
// `pulumi up` would: the migration Job (replaced: its image changed) plans the upgrade, scales the
// tracking server to zero and waits for its pods to go, dumps the database into the backup bucket, and
// migrates; then the Deployment rolls the new version and the resume Job checks its replica count. Every
// seeded item must be there and equal afterwards, the alias still served, and writes taken.
import assert from "assert/strict";
import { ChildProcess, execFile, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse, stringify } from "yaml";
import { MLFLOW_PREVIOUS_VERSION, MLFLOW_VERSION } from "../../components/images";
import { ensureKubernetesTools } from "../../scripts/cluster/controlPlane";
import { ROOT } from "../../scripts/lib/program";
import { LAUNCHER_LOCK } from "../../scripts/local/lock";
import { sleep, waitUntil } from "../../scripts/local/supervisor";
import { ensureLocalTools, LocalTools } from "../../scripts/local/tools";
import { basicAuth, E2E_PARTS, e2eDataRoot, timed } from "./fixture";

const DIR = path.join(e2eDataRoot(), "e2e-upgrade");
const OLD_IMAGE = `ghcr.io/mlflow/mlflow:v${MLFLOW_PREVIOUS_VERSION}-full`;
/** The tag older MLflow keeps a trace's name in (3.17 moves it into a column). */
const TRACE_NAME_TAG = "mlflow.traceName";

interface Launch {
    child: ChildProcess;
    output: () => string;
    exited: Promise<number | null>;
}

/** `npm run local -- ARGS --dir DIR`, as a user starts it. */
function npmRunLocal(args: string[]): Launch {
    const child = spawn("npm", ["run", "local", "--", ...args, "--dir", DIR], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FORCE_COLOR: "0" } });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    return { child, output: () => out, exited };
}

/** What the launcher prints once MLflow is up: the edge's URL and the login. */
async function up(l: Launch): Promise<{ url: string; user: string; password: string }> {
    await waitUntil("MLflow is up", async () => /MLflow is up/.test(l.output()) || l.child.exitCode !== null, 900_000, l.output);
    const m = /UI and API\s+(\S+)\s+user (\S+)\s+password (\S+)/.exec(l.output());
    assert.ok(m, `no login line in:\n${l.output()}`);
    return { url: m[1], user: m[2], password: m[3] };
}

/** Runs a Python script to completion; its last stdout line parsed as JSON. */
function runPython(python: string, args: string[], env: NodeJS.ProcessEnv): Promise<any> {
    return new Promise((resolve, reject) =>
        execFile(python, args, { cwd: ROOT, env, encoding: "utf8", timeout: 600_000, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
            if (error) return reject(new Error(`${args.join(" ").slice(0, 200)} failed:\n${stdout}\n${stderr}`));
            const lines = stdout.trim().split("\n");
            resolve(JSON.parse(lines[lines.length - 1]));
        }),
    );
}

/** What the seeding client writes beside the example: params, a metric history, tags, an artifact, a trace, model tags. */
const SEED = `
import json, os, tempfile
import mlflow
from mlflow import MlflowClient
c = MlflowClient()
exp = mlflow.set_experiment("upgrade-seed")
c.set_experiment_tag(exp.experiment_id, "team", "platform")
with mlflow.start_run(run_name="seeded") as run:
    mlflow.log_params({"alpha": "0.5", "layers": "3"})
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.set_tags({"stage": "seeded"})
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("seeded before the upgrade")
    mlflow.log_artifact(os.path.join(d, "notes.txt"))

@mlflow.trace(name="double")
def double(x):
    return 2 * x

double(21)
trace_id = mlflow.get_last_active_trace_id()
c.set_registered_model_tag("wine-quality", "owner", "platform")
c.set_model_version_tag("wine-quality", "1", "validated", "true")
print(json.dumps({"experiment_id": exp.experiment_id, "run_id": run.info.run_id, "trace_id": trace_id}))
`;

/** A trace as the client reads it back (either version's client): its spans' names, inputs and outputs. */
const READ_TRACE = `
import json, sys
import mlflow
t = mlflow.get_trace(sys.argv[1])
print(json.dumps({"state": str(t.info.state), "spans": [[s.name, s.inputs, s.outputs] for s in t.data.spans]}))
`;

/** Whether `after` holds everything `before` holds (what a newer server returns may add fields). */
function assertContains(after: unknown, before: unknown, at = "$"): void {
    if (Array.isArray(before)) {
        assert.ok(Array.isArray(after), `${at}: not a list after the upgrade`);
        assert.equal(after.length, before.length, `${at}: ${before.length} items before, ${after.length} after`);
        before.forEach((b, i) => assertContains(after[i], b, `${at}[${i}]`));
    } else if (before !== null && typeof before === "object") {
        assert.ok(after !== null && typeof after === "object", `${at}: not an object after the upgrade`);
        for (const [k, v] of Object.entries(before)) {
            // A paging token is how a server continues its listing, not data.
            if (k === "next_page_token") continue;
            assertContains((after as Record<string, unknown>)[k], v, `${at}.${k}`);
        }
    } else assert.deepEqual(after, before, at);
}

describe(`e2e (11u): upgrading MLflow ${MLFLOW_PREVIOUS_VERSION} → ${MLFLOW_VERSION} through the platform's own path keeps everything`, function () {
    this.timeout(3_600_000);
    let tools: LocalTools;
    let launch: Launch | undefined;
    let login: { url: string; user: string; password: string };
    let stackDir: string;
    let seeded: { experiment_id: string; run_id: string; trace_id: string };
    let example: { run_id: string; version: string };
    let then: { api: Record<string, unknown>; rows: Record<string, number>; trace: unknown; predictions: unknown; traceNames: string };
    let wine: { inputs: unknown[] };

    const previousPython = () => path.join(tools.mlflowPreviousVenv, "bin", "python");
    const currentPython = () => path.join(tools.mlflowVenv, "bin", "python");
    const clientEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, HOME: process.env.HOME, MLFLOW_TRACKING_URI: login.url, MLFLOW_TRACKING_USERNAME: login.user, MLFLOW_TRACKING_PASSWORD: login.password });
    const api = async (p: string, body?: unknown) => {
        const res = await fetch(`${login.url}${p}`, {
            method: body === undefined ? "GET" : "POST",
            headers: { ...basicAuth(login.user, login.password), ...(body === undefined ? {} : { "content-type": "application/json" }) },
            body: body === undefined ? undefined : JSON.stringify(body),
            signal: AbortSignal.timeout(60_000),
        });
        const text = await res.text();
        assert.equal(res.status, 200, `${p}: ${res.status} ${text.slice(0, 300)}`);
        return text.startsWith("{") ? JSON.parse(text) : text;
    };
    const kubectl = (args: string[]) => {
        const r = spawnSync(ensureKubernetesTools().kubectl, ["--kubeconfig", path.join(DIR, "data", "kubernetes", "kubeconfig"), "-n", "mlflow-dev", ...args], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        return r.stdout;
    };
    /** A query on the MLflow database, over the Service's loopback port with the rendered password. */
    const sql = (query: string): string => {
        const ports = JSON.parse(fs.readFileSync(path.join(DIR, "ports.json"), "utf8"));
        const secret = parse(fs.readFileSync(path.join(DIR, "rendered", "secret-mlflow-database.yaml"), "utf8"));
        const env = { PATH: "/usr/bin:/bin", PGHOST: "127.0.0.1", PGPORT: String(ports["svc/mlflow-postgres/5432"]), PGUSER: "mlflow", PGDATABASE: "mlflow", PGPASSWORD: secret.stringData.password };
        const r = spawnSync(path.join(tools.pgBin, "psql"), ["-X", "-w", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query], { env, encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        return r.stdout.trim();
    };
    /** Rows of every table. */
    const rowCounts = (): Record<string, number> => {
        const tables = sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split("\n");
        return Object.fromEntries(tables.map((t) => [t, Number(sql(`SELECT count(*) FROM "${t}"`))]));
    };
    /** What the REST API returns for everything seeded. */
    const apiView = async () => {
        const experiments = await api("/api/2.0/mlflow/experiments/search", { max_results: 1000 });
        const ids = experiments.experiments.map((e: { experiment_id: string }) => e.experiment_id);
        const runs = await api("/api/2.0/mlflow/runs/search", { experiment_ids: ids, max_results: 1000, order_by: ["attributes.start_time ASC"] });
        return {
            experiments,
            runs,
            history: await api(`/api/2.0/mlflow/metrics/get-history?run_id=${seeded.run_id}&metric_key=loss`),
            models: await api("/api/2.0/mlflow/registered-models/search?max_results=1000"),
            versions: await api(`/api/2.0/mlflow/model-versions/search?filter=${encodeURIComponent("name='wine-quality'")}`),
            alias: await api("/api/2.0/mlflow/registered-models/alias?name=wine-quality&alias=champion"),
            artifacts: await api(`/api/2.0/mlflow/artifacts/list?run_id=${seeded.run_id}`),
            notes: await api(`/get-artifact?path=notes.txt&run_uuid=${seeded.run_id}`),
        };
    };
    const predict = async () => {
        for (let i = 0; ; i++) {
            const res = await fetch(`${login.url}/v2/models/wine-quality/infer`, {
                method: "POST",
                headers: { ...basicAuth(login.user, login.password), "content-type": "application/json" },
                body: JSON.stringify(wine),
            });
            const text = await res.text();
            if (res.status === 200) return JSON.parse(text).outputs;
            if (i > 120) assert.fail(`v2 inference: ${res.status} ${text.slice(0, 300)}`);
            await sleep(2000);
        }
    };
    /** The lines `--- <time> start|exited` the node writes into a container's log, with the log's text. */
    const logs = () =>
        fs.readdirSync(path.join(DIR, "logs")).map((f) => {
            const text = fs.readFileSync(path.join(DIR, "logs", f), "utf8");
            const at = (re: RegExp) => [...text.matchAll(re)].map((m) => Date.parse(m[1]));
            return { file: f, text, starts: at(/^--- (\S+) start /gm), exits: at(/^--- (\S+) exited/gm) };
        });
    const stop = async () => {
        const l = launch;
        launch = undefined;
        if (!l || l.child.exitCode !== null) return;
        l.child.kill("SIGTERM");
        assert.equal(await l.exited, 0, l.output());
    };

    before(async function () {
        this.timeout(1_800_000);
        tools = await timed("install", () => ensureLocalTools(E2E_PARTS));
        fs.rmSync(DIR, { recursive: true, force: true });
        // The dev stack as it is, on the previous MLflow.
        stackDir = fs.mkdtempSync(path.join(os.tmpdir(), "upgrade-stack-"));
        const file = parse(fs.readFileSync(path.join(ROOT, "Pulumi.dev.yaml"), "utf8"));
        file.config["mlflow-platform:tracking"] = { ...file.config["mlflow-platform:tracking"], image: OLD_IMAGE };
        fs.writeFileSync(path.join(stackDir, "Pulumi.dev.yaml"), stringify(file));
        wine = await runPython(
            currentPython(),
            ["-c", `import json\nfrom sklearn.datasets import load_wine\nx, _ = load_wine(return_X_y=True, as_frame=True)\nr = x.sample(n=5, random_state=3)\nprint(json.dumps({"inputs": [{"name": c, "datatype": "FP64", "shape": [5], "data": r[c].tolist()} for c in r.columns]}))`],
            { PATH: process.env.PATH, HOME: process.env.HOME },
        );
    });

    after(async function () {
        this.timeout(300_000);
        // Whatever happened: npm first, then the launcher by the PID its lock holds.
        const l = launch;
        if (l && l.child.exitCode === null) {
            l.child.kill("SIGTERM");
            await Promise.race([l.exited, sleep(180_000)]);
        }
        const lock = path.join(DIR, LAUNCHER_LOCK);
        if (fs.existsSync(lock)) {
            const pid = Number(fs.readFileSync(lock, "utf8").split("\n")[0]);
            try {
                process.kill(pid, "SIGTERM");
            } catch {
                /* gone */
            }
        }
        fs.rmSync(stackDir, { recursive: true, force: true });
    });

    it(`on ${MLFLOW_PREVIOUS_VERSION}: the example and a seed by that version's own client, served by the alias`, async () => {
        launch = npmRunLocal(["--stack-dir", stackDir]);
        login = await timed("upgrade: start on the previous MLflow", () => up(launch!));
        assert.equal(await api("/version"), MLFLOW_PREVIOUS_VERSION);
        example = await runPython(previousPython(), ["examples/train_wine.py"], clientEnv());
        seeded = await runPython(previousPython(), ["-c", SEED], clientEnv());
        then = {
            api: await apiView(),
            rows: rowCounts(),
            trace: await runPython(previousPython(), ["-c", READ_TRACE, seeded.trace_id], clientEnv()),
            predictions: await predict(),
            traceNames: sql(`SELECT request_id, value FROM trace_tags WHERE key = '${TRACE_NAME_TAG}' ORDER BY 1`),
        };
        assert.equal(then.api.alias && (then.api.alias as any).model_version.version, example.version);
        assert.ok(then.rows.trace_info >= 1 && then.rows.runs >= 2 && then.rows.model_versions >= 1, JSON.stringify(then.rows));
    });

    it(`upgrades on a restart with the pinned image: the writers stopped, a dump under pre-upgrade/, the migration, then ${MLFLOW_VERSION}`, async () => {
        assert.ok(then, "the seed ran");
        await stop();
        const t0 = Date.now();
        launch = npmRunLocal([]);
        login = await timed("upgrade: restart on the pinned MLflow", () => up(launch!));
        console.log(`      upgraded and up after ${Math.round((Date.now() - t0) / 1000)} s`);
        assert.equal(await api("/version"), MLFLOW_VERSION);
        const all = logs();
        const plan = all.find((l) => /-plan\.log$/.test(l.file) && /stopping the writers/.test(l.text));
        assert.ok(plan, `no plan log of an upgrade among ${all.map((l) => l.file).join(", ")}`);
        assert.match(plan.text, /schema \w+ -> \w+: stopping the writers, then a dump, then the migration/);
        assert.match(plan.text, /scaled Deployment mlflow-server from 1 to 0 replicas/);
        assert.match(plan.text, /no tracking server pod is left: nothing writes to the database/);
        const job = plan.file.replace(/-plan\.log$/, "");
        const dump = all.find((l) => l.file === `${job}-dump.log`)!;
        assert.match(dump.text, /uploaded pre-upgrade\/mlflow-\d{8}T\d{6}Z\.dump to mlflow-backups/);
        const migrate = all.find((l) => l.file === `${job}-migrate.log`)!;
        // No tracking server of the old version ran while the schema changed: every run of the old one had
        // exited before the migration started (the node restarted the old pods first, as a cluster keeps them).
        const migrationStart = migrate.starts[migrate.starts.length - 1];
        const current = JSON.parse(kubectl(["get", "pods", "-l", "app.kubernetes.io/name=tracking", "-o", "json"])).items.map((p: any) => `${p.metadata.name}-mlflow.log`);
        const oldServers = all.filter((l) => /^mlflow-server-.*-mlflow\.log$/.test(l.file) && !current.includes(l.file));
        assert.ok(oldServers.length > 0, "the old version's pods ran");
        for (const l of oldServers) {
            assert.equal(l.exits.length, l.starts.length, `${l.file}: still running`);
            assert.ok(Math.max(...l.exits) <= migrationStart, `${l.file} exited at ${new Date(Math.max(...l.exits)).toISOString()}, after the migration started at ${new Date(migrationStart).toISOString()}`);
        }
        // The server is back at its replica count, and the count the upgrade recorded is gone.
        const deployment = JSON.parse(kubectl(["get", "deployment", "mlflow-server", "-o", "json"]));
        assert.equal(deployment.spec.replicas, 1);
        assert.equal(deployment.metadata.annotations?.["mlflow-platform.io/replicas-before-upgrade"], undefined);
        assert.equal(deployment.spec.template.spec.containers[0].image, `ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}-full`);
    });

    it("keeps every seeded item: the rows of every table (a moved trace name accounted for), what the API returns, the trace", async () => {
        const rows = rowCounts();
        const differ = Object.entries(then.rows).filter(([table, n]) => table !== "alembic_version" && rows[table] !== n);
        // MLflow's trace analytics migration (revision 75868b020152) moves each trace's name from its
        // `mlflow.traceName` tag into trace_info.trace_name and deletes the tag: the one move allowed.
        const moved = then.traceNames ? then.traceNames.split("\n").length : 0;
        assert.deepEqual(differ, moved ? [["trace_tags", then.rows.trace_tags]] : [], `tables whose rows changed: ${JSON.stringify(differ.map(([t, n]) => [t, n, rows[t]]))}`);
        assert.equal(rows.trace_tags, then.rows.trace_tags - moved);
        if (moved) assert.equal(sql("SELECT request_id, trace_name FROM trace_info WHERE trace_name IS NOT NULL ORDER BY 1"), then.traceNames, "every moved name is in its trace");
        assertContains(await apiView(), then.api);
        assertContains(await runPython(currentPython(), ["-c", READ_TRACE, seeded.trace_id], clientEnv()), then.trace);
    });

    it(`still serves the alias: the model ${MLFLOW_PREVIOUS_VERSION} saved answers as before`, async () => {
        assert.deepEqual(await predict(), then.predictions);
    });

    it(`takes writes on ${MLFLOW_VERSION}`, async () => {
        const r = await runPython(
            currentPython(),
            ["-c", `import json, mlflow\nmlflow.set_experiment("upgrade-seed")\nwith mlflow.start_run() as r:\n    mlflow.log_metric("after", 1.0)\nprint(json.dumps({"run_id": r.info.run_id}))`],
            clientEnv(),
        );
        const run = await api(`/api/2.0/mlflow/runs/get?run_id=${r.run_id}`);
        assert.equal(run.run.data.metrics[0].key, "after");
        await stop();
    });
});
