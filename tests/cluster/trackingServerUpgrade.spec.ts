// The tracking server's upgrade steps (components/trackingServer/upgrade/mlflow_platform_upgrade.py) as the
// migration Job and the resume Job run them: the script from the repository, on the MLflow of the local
// tier's venv (the image's version), against a real PostgreSQL and a real kube-apiserver, with a
// TokenRequest token of a ServiceAccount bound to the Role the component renders (upgradeRules). The
// controllers are off: the spec makes the tracking pods itself, so it decides when the last one is gone.
import assert from "assert/strict";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { upgradeRules } from "../../components/trackingServer/upgrade";
import { BACKEND_STORE_URI } from "../../components/trackingServer";
import { MLFLOW_VERSION } from "../../components/images";
import { ControlPlane } from "../../scripts/cluster/controlPlane";
import { KubeClient } from "../../scripts/cluster/kubeClient";
import { freePort } from "../../scripts/lib/ports";
import { postgresOwner } from "../../scripts/local/runtime";
import { startLocalPostgres } from "../../scripts/local/postgres";
import { Supervisor } from "../../scripts/local/supervisor";
import { ensureLocalTools } from "../../scripts/local/tools";
import { INSTALL_TIMEOUT_MS, ROOT } from "../harness";

const SCRIPT = path.join(ROOT, "components", "trackingServer", "upgrade", "mlflow_platform_upgrade.py");
const NS = "mlflow-upgrade";
const DEPLOYMENT = "mlflow-server";
const SA = "mlflow-upgrade";
const SELECTOR = { "app.kubernetes.io/name": "tracking", "app.kubernetes.io/instance": "mlflow" };
const ANNOTATION = "mlflow-platform.io/replicas-before-upgrade";
const FINALIZER = "mlflow-platform.io/held-by-test";

interface Run {
    status: number | null;
    stdout: string;
    stderr: string;
}

describe("tracking server upgrade steps: plan, migrate and resume on a real API server and PostgreSQL", function () {
    let tmp: string;
    let cp: ControlPlane;
    let admin: KubeClient;
    let sup: Supervisor;
    let venv: string;
    let previousVenv: string;
    let pgBin: string;
    let database: Record<string, string>;
    let saDir: string;

    before(async function () {
        this.timeout(INSTALL_TIMEOUT_MS);
        const tools = ensureLocalTools(["apt", "mlflow", "mlflow-previous"]);
        venv = tools.mlflowVenv;
        previousVenv = tools.mlflowPreviousVenv;
        pgBin = tools.pgBin;
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tracking-upgrade-"));
        fs.chmodSync(tmp, 0o755); // the postgres user must reach its directories below
        cp = await ControlPlane.start({ dir: path.join(tmp, "kubernetes"), controllers: false, ephemeral: true });
        admin = cp.client();

        const owner = postgresOwner();
        const dir = path.join(tmp, "postgres");
        for (const d of ["data", "run", "credentials"]) fs.mkdirSync(path.join(dir, d), { recursive: true, mode: 0o755 });
        const password = path.join(dir, "credentials", "password");
        fs.writeFileSync(password, "upgrade-Pa55word", { mode: 0o440 });
        if (owner) for (const f of [dir, ...["data", "run", "credentials"].map((d) => path.join(dir, d)), password]) fs.chownSync(f, owner.uid, owner.gid);
        sup = new Supervisor(path.join(dir, "logs"), path.join(dir, "pids"));
        const spec = {
            argv: [path.join(pgBin, "postgres"), "-c", "listen_addresses=127.0.0.1"],
            env: { PGDATA: path.join(dir, "data", "pgdata"), POSTGRES_USER: "mlflow", POSTGRES_DB: "mlflow", POSTGRES_PASSWORD_FILE: password, PATH: `${pgBin}:/usr/bin:/bin` },
            cwd: dir,
        };
        database = (await startLocalPostgres({ name: "db", spec, port: await freePort(), socketDir: path.join(dir, "run"), pgBin, supervisor: sup, owner, graceMs: 20_000 })).database;

        const meta = { name: SA, namespace: NS };
        for (const obj of [
            { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } },
            { apiVersion: "v1", kind: "ServiceAccount", metadata: meta, automountServiceAccountToken: false },
            { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: meta, rules: upgradeRules(DEPLOYMENT) },
            {
                apiVersion: "rbac.authorization.k8s.io/v1",
                kind: "RoleBinding",
                metadata: meta,
                roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: SA },
                subjects: [{ kind: "ServiceAccount", name: SA, namespace: NS }],
            },
            deployment(DEPLOYMENT, 2),
            deployment("mlflow-other", 1),
        ]) {
            await admin.apply(obj as any, { fieldManager: "mlflow-platform-tests" });
        }
        // What the projected volume holds in the pod: the token, the cluster CA.
        saDir = path.join(tmp, "serviceaccount");
        fs.mkdirSync(saDir);
        fs.writeFileSync(path.join(saDir, "token"), await cp.serviceAccountToken(NS, SA, 3600), { mode: 0o600 });
        fs.writeFileSync(path.join(saDir, "ca.crt"), cp.access.ca);
    });

    after(async () => {
        await sup?.stopAll();
        admin?.close();
        await cp?.stop();
        if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    function deployment(name: string, replicas: number) {
        return {
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name, namespace: NS },
            spec: {
                replicas,
                selector: { matchLabels: { ...SELECTOR, "app.kubernetes.io/instance": name === DEPLOYMENT ? "mlflow" : name } },
                template: {
                    metadata: { labels: { ...SELECTOR, "app.kubernetes.io/instance": name === DEPLOYMENT ? "mlflow" : name } },
                    spec: { containers: [{ name: "mlflow", image: "registry.invalid/mlflow:test" }] },
                },
            },
        };
    }

    const planFile = () => path.join(tmp, "plan");
    const env = (extra: Record<string, string> = {}) => {
        const server = new URL(cp.server);
        return {
            PATH: `${path.join(venv, "bin")}:/usr/bin:/bin`,
            HOME: tmp,
            PYTHONDONTWRITEBYTECODE: "1",
            KUBERNETES_SERVICE_HOST: server.hostname,
            KUBERNETES_SERVICE_PORT: server.port,
            SA_DIR: saDir,
            NAMESPACE: NS,
            DEPLOYMENT,
            PLAN_FILE: planFile(),
            BACKEND_STORE_URI,
            ...database,
            ...extra,
        };
    };
    /** Runs a command of the script as the Job's container does; resolves when it exits. */
    function step(command: "plan" | "migrate" | "resume", extra: Record<string, string> = {}, python = path.join(venv, "bin", "python")): { done: Promise<Run>; exited: () => boolean } {
        let exited = false;
        const child = spawn(python, [SCRIPT, command], { env: { ...env(extra), PATH: `${path.dirname(python)}:/usr/bin:/bin` }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        const done = new Promise<Run>((resolve) =>
            child.on("close", (status) => {
                exited = true;
                resolve({ status, stdout, stderr });
            }),
        );
        return { done, exited: () => exited };
    }
    const psql = (sql: string, db = database.PGDATABASE) => {
        const r = spawnSync(path.join(pgBin, "psql"), ["-X", "-w", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], { env: { ...database, PGDATABASE: db, PATH: "/usr/bin:/bin" }, encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        return r.stdout.trim();
    };
    const live = async (name = DEPLOYMENT) => (await admin.call("GET", `/apis/apps/v1/namespaces/${NS}/deployments/${name}`)).body;
    const podsLeft = async () => ((await admin.call("GET", `/api/v1/namespaces/${NS}/pods`)).body.items as any[]).filter((p) => p.metadata.labels?.["app.kubernetes.io/instance"] === "mlflow");
    /** A tracking pod as its ReplicaSet would make it; with the finalizer it stays Terminating until the spec lets it go. */
    const trackingPod = (name: string, finalizers: string[] = []) =>
        admin.call("POST", `/api/v1/namespaces/${NS}/pods`, { apiVersion: "v1", kind: "Pod", metadata: { name, labels: SELECTOR, finalizers },
            // No controllers, so no `default` ServiceAccount: the pods name one that exists.
            spec: { serviceAccountName: SA, automountServiceAccountToken: false, containers: [{ name: "mlflow", image: "registry.invalid/mlflow:test" }] },
        });
    /** The revisions of this MLflow's migrations: the newest and the one before it. */
    const revisions = (python = path.join(venv, "bin", "python")) => {
        const r = spawnSync(
            python,
            ["-c", "from alembic.script import ScriptDirectory\nfrom mlflow.store.db.utils import _get_alembic_config\ns=ScriptDirectory.from_config(_get_alembic_config(''))\nh=s.get_revision(s.get_current_head())\nprint(h.revision, h.down_revision)"],
            { encoding: "utf8", env: { PATH: "/usr/bin:/bin", HOME: tmp } },
        );
        assert.equal(r.status, 0, r.stderr);
        const [head, previous] = r.stdout.trim().split(" ");
        return { head, previous };
    };

    it("on an empty database plans `fresh` and touches no Deployment", async function () {
        this.timeout(120_000);
        const r = await step("plan").done;
        assert.equal(r.status, 0, r.stderr);
        assert.equal(fs.readFileSync(planFile(), "utf8"), "fresh\n");
        const d = await live();
        assert.equal(d.spec.replicas, 2);
        assert.equal(d.metadata.annotations?.[ANNOTATION], undefined);
    });

    it("migrate: an empty database gets MLflow's tables at the head revision, with 3.11.1 too (whose own `db upgrade` fails on one)", async function () {
        this.timeout(600_000);
        const r = await step("migrate").done;
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /empty database: creating MLflow's tables/);
        assert.equal(psql("SELECT version_num FROM alembic_version"), revisions().head);
        assert.ok(Number(psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")) > 20, "MLflow's tables");
        // The previous supported MLflow, on empty databases of its own.
        const previousPython = path.join(previousVenv, "bin", "python");
        for (const db of ["mlflow_previous", "mlflow_previous_cli"]) psql(`CREATE DATABASE ${db}`);
        const cli = spawnSync(path.join(previousVenv, "bin", "mlflow"), ["db", "upgrade", BACKEND_STORE_URI], { env: { ...env(), PGDATABASE: "mlflow_previous_cli" }, encoding: "utf8" });
        assert.notEqual(cli.status, 0, "MLflow 3.11.1's own db upgrade on an empty database");
        assert.match(cli.stderr, /relation "metrics" does not exist/);
        const old = await step("migrate", { PGDATABASE: "mlflow_previous" }, previousPython).done;
        assert.equal(old.status, 0, old.stderr);
        assert.equal(psql("SELECT version_num FROM alembic_version", "mlflow_previous"), revisions(previousPython).head);
    });

    it("on the schema this MLflow migrates to plans `current`, and stops nothing", async function () {
        this.timeout(300_000);
        const r = await step("plan").done;
        assert.equal(r.status, 0, r.stderr);
        assert.equal(fs.readFileSync(planFile(), "utf8"), "current\n");
        assert.equal((await live()).spec.replicas, 2);
    });

    it("behind this MLflow: records the replica count, scales the Deployment to zero and waits until its last pod is gone", async function () {
        this.timeout(180_000);
        const { head, previous } = revisions();
        psql(`UPDATE alembic_version SET version_num = '${previous}'`);
        await trackingPod("mlflow-server-held", [FINALIZER]);
        await trackingPod("mlflow-server-free");
        const run = step("plan");
        // The writers are stopped: the count recorded, zero replicas, the pods deleted...
        for (let i = 0; ; i++) {
            const d = await live();
            if (d.spec.replicas === 0 && d.metadata.annotations?.[ANNOTATION] === "2") break;
            if (run.exited() || i >= 100) assert.fail(`the Deployment was not scaled down (${JSON.stringify(d.spec)}): ${run.exited() ? (await run.done).stderr : "timeout"}`);
            await new Promise((r) => setTimeout(r, 300));
        }
        // ...but a pod that is still terminating still writes: the step waits for it.
        await admin.call("DELETE", `/api/v1/namespaces/${NS}/pods/mlflow-server-free`);
        await admin.call("DELETE", `/api/v1/namespaces/${NS}/pods/mlflow-server-held`);
        await new Promise((r) => setTimeout(r, 5000));
        assert.equal(run.exited(), false, "the step must not finish while a tracking pod exists");
        assert.deepEqual((await podsLeft()).map((p) => p.metadata.name), ["mlflow-server-held"]);
        assert.ok(!fs.existsSync(planFile()) || fs.readFileSync(planFile(), "utf8") === "current\n", "no plan is handed on before the writers are gone");
        await admin.call("PATCH", `/api/v1/namespaces/${NS}/pods/mlflow-server-held`, { metadata: { finalizers: null } }, "application/merge-patch+json");
        const r = await run.done;
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /no tracking server pod is left/);
        assert.equal(fs.readFileSync(planFile(), "utf8"), `upgrade ${previous} ${head}\n`);
        assert.equal((await live("mlflow-other")).spec.replicas, 1, "another Deployment is left alone");
        // A retried Job keeps the count it recorded first, not the zero it left.
        const again = await step("plan").done;
        assert.equal(again.status, 0, again.stderr);
        assert.equal((await live()).metadata.annotations[ANNOTATION], "2");
    });

    it("resume: scales the Deployment back to the recorded count once the upgrade left it at zero, and forgets the count", async function () {
        this.timeout(120_000);
        const run = step("resume", { STOP_TIMEOUT_SECONDS: "60" });
        for (let i = 0; (await live()).spec.replicas !== 2; i++) {
            if (run.exited() || i >= 100) assert.fail(`not scaled back: ${run.exited() ? (await run.done).stderr : "timeout"}`);
            await new Promise((r) => setTimeout(r, 300));
        }
        // It ends when the server serves again (no kubelet here: the spec reports the pods available).
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal(run.exited(), false, "it waits for an available replica");
        await admin.call("PATCH", `/apis/apps/v1/namespaces/${NS}/deployments/${DEPLOYMENT}/status`, { status: { replicas: 2, readyReplicas: 2, availableReplicas: 2 } }, "application/merge-patch+json");
        const r = await run.done;
        assert.equal(r.status, 0, r.stderr);
        assert.equal((await live()).metadata.annotations?.[ANNOTATION], undefined);
        // With nothing recorded it is a no-op.
        const again = await step("resume").done;
        assert.equal(again.status, 0, again.stderr);
        assert.match(again.stdout, /no upgrade to resume from/);
    });

    it("refuses a schema revision this MLflow does not know (a newer MLflow migrated it), naming it, and changes nothing", async function () {
        this.timeout(120_000);
        psql("UPDATE alembic_version SET version_num = 'ffffffffffff'");
        fs.rmSync(planFile(), { force: true });
        const r = await step("plan").done;
        assert.equal(r.status, 1);
        assert.match(r.stderr, new RegExp(`schema revision ffffffffffff is not one MLflow ${MLFLOW_VERSION.replace(/\./g, "\\.")} knows: a newer MLflow migrated it\\. Nothing was changed`));
        assert.doesNotMatch(r.stderr, /Traceback/);
        assert.equal(fs.existsSync(planFile()), false, "no plan for the next steps");
        assert.equal((await live()).spec.replicas, 2);
        psql(`UPDATE alembic_version SET version_num = '${revisions().head}'`);
    });

    it("may scale only its own Deployment: the API server answers 403 for another", async function () {
        this.timeout(120_000);
        const { previous } = revisions();
        psql(`UPDATE alembic_version SET version_num = '${previous}'`);
        const r = await step("plan", { DEPLOYMENT: "mlflow-other" }).done;
        assert.equal(r.status, 1);
        assert.match(r.stderr, /HTTP 403: deployments\.apps "mlflow-other" is forbidden: User "system:serviceaccount:mlflow-upgrade:mlflow-upgrade" cannot get resource "deployments"/);
        assert.equal((await live("mlflow-other")).spec.replicas, 1);
    });
});
