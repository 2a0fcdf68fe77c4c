// Restore drill (issue 6): run the rendered backup CronJob's pod once (its pg_dump command, then its
// upload script with mc against the local MinIO), fetch the dump from the backup bucket as the backup
// user, restore it with pg_restore into a NEW database, and compare every MLflow table row for row:
// runs, params, metrics, registry content. Then the artifacts (issue 13): run the rendered artifact
// backup CronJob's pod once (mc mirror into the backup bucket's artifacts/), erase the example's model
// directory from the artifact bucket with every version (what versioning alone cannot undo), restore it
// from the backup prefix with mc as README "Restoring a backup" says, and compare it byte for byte,
// in the bucket and as MLflow serves it through the edge.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { COMPONENT as ARTIFACT_BACKUP } from "../../components/artifactBackup";
import { COMPONENT as DATABASE_BACKUP } from "../../components/databaseBackup";
import type { LocalPlatform } from "../../scripts/local/platform";
import { workloadOf } from "../../scripts/local/workloads";
import { basicAuth, E2E_DIR, ExampleRun, platformUp, timed, wineExample } from "./fixture";

function sh(p: LocalPlatform, args: string[], env: Record<string, string> = {}): string {
    return run(p, args, env).toString("utf8");
}
function run(p: LocalPlatform, args: string[], env: Record<string, string> = {}): Buffer {
    const r = spawnSync(args[0], args.slice(1), { env: { ...p.database, ...env }, maxBuffer: 256 * 1024 * 1024 });
    assert.equal(r.status, 0, `${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
}

/** Every table of the public schema with its rows, each table ordered by all its columns. */
function tableContents(p: LocalPlatform, database: string): Record<string, string> {
    const psql = (sql: string) => sh(p, [path.join(p.tools.pgBin, "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-tA", "-d", database, "-c", sql]);
    const tables = psql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1").split("\n").filter(Boolean);
    const out: Record<string, string> = {};
    for (const t of tables) {
        // Ordered by the row's text form: json columns have no ordering operator.
        out[t] = psql(`COPY (SELECT * FROM public."${t}" AS r ORDER BY r::text) TO STDOUT`);
    }
    return out;
}

describe("e2e: restore drill from the backup CronJob's dump", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;
    let example: ExampleRun;
    const mcEnv = () => ({ MC_CONFIG_DIR: path.join(E2E_DIR, "restore-mc") });
    const minioEndpoint = () => `http://127.0.0.1:${p.servicePort("mlflow-minio", 9000)}`;
    /** An mc alias as the user of a rendered credentials Secret. */
    function alias(name: string, secret: string, keys: [string, string] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) {
        const creds = p.stack.secretData(secret);
        sh(p, [p.tools.mc, "alias", "set", name, minioEndpoint(), creds[keys[0]], creds[keys[1]]], mcEnv());
    }
    const mc = (...args: string[]) => run(p, [p.tools.mc, ...args], mcEnv());

    before(async () => {
        p = await platformUp();
        example = await wineExample(p);
    });

    it("dumps and uploads with the rendered CronJob, restores into a new database, and the content is identical", async () => {
        const object = await timed("backup job", () => p.runBackup());
        assert.match(object, /^mlflow-\d{8}T\d{6}Z\.dump$/);

        // Fetch it the way an admin does (README "Restoring a backup"): mc as the backup user.
        const upload = workloadOf(p.stack, "CronJob", DATABASE_BACKUP).container;
        const bucket = upload.env!.find((e) => e.name === "BACKUP_BUCKET")!.value!;
        alias("backups", "mlflow-artifacts-backup");
        const listing = mc("ls", `backups/${bucket}/`).toString();
        assert.match(listing, new RegExp(object.replace(/\./g, "\\.")));
        const dump = path.join(E2E_DIR, "restore.dump");
        mc("cp", "--quiet", `backups/${bucket}/${object}`, dump);
        assert.ok(fs.statSync(dump).size > 10_000);

        const restored = `mlflow_restore_${Date.now()}`;
        sh(p, [path.join(p.tools.pgBin, "createdb"), restored]);
        sh(p, [path.join(p.tools.pgBin, "pg_restore"), "--no-owner", "--exit-on-error", `--dbname=${restored}`, dump]);

        const original = tableContents(p, p.database.PGDATABASE);
        const copy = tableContents(p, restored);
        assert.deepEqual(Object.keys(copy), Object.keys(original));
        for (const t of ["runs", "params", "metrics", "latest_metrics", "registered_models", "model_versions", "registered_model_aliases", "experiments", "logged_models"]) {
            assert.ok(original[t] !== undefined, `table ${t} exists`);
            assert.ok(original[t].length > 0, `table ${t} has rows`);
        }
        for (const t of Object.keys(original)) assert.equal(copy[t], original[t], `table ${t} differs after restore`);
        sh(p, [path.join(p.tools.pgBin, "dropdb"), restored]);
    });

    it("mirrors the artifacts with the rendered CronJob; a model erased from the artifact bucket is restored from the backup, byte for byte", async () => {
        const cron = workloadOf(p.stack, "CronJob", ARTIFACT_BACKUP);
        await timed("artifact backup job", () => p.runJob(cron.name, "CronJob"));
        const env = Object.fromEntries(cron.container.env!.map((e) => [e.name, e.value!]));
        const { ARTIFACT_BUCKET: bucket, BACKUP_BUCKET: backupBucket, BACKUP_PREFIX: prefix } = env;
        assert.equal(`s3://${bucket}`, p.artifactsDestination, "it backs up the bucket MLflow writes");
        const credentials = p.stack.podTemplate("CronJob", cron.name).spec.volumes!.find((v) => v.secret)!.secret!.secretName;

        // An admin's three aliases: the backup as the artifact backup user (who may only read it here),
        // the artifact bucket as MLflow's read-write user, and MinIO's root for the mistake.
        alias("artifact-backup", credentials);
        alias("artifacts", "mlflow-artifacts-readwrite");
        alias("root", "mlflow-artifacts-root", ["rootUser", "rootPassword"]);
        const modelDir = `${example.experiment_id}/models/${example.model_id}/artifacts/`;
        const files = (root: string) =>
            mc("ls", "--recursive", root).toString().trim().split("\n").map((l) => l.trim().split(/\s+/).pop()!).filter(Boolean).sort();
        const names = files(`artifacts/${bucket}/${modelDir}`);
        assert.ok(names.includes("MLmodel") && names.includes("model.skops"), names.join(", "));
        const original = Object.fromEntries(names.map((n) => [n, mc("cat", `artifacts/${bucket}/${modelDir}${n}`)]));
        // The copy is there, equal, before anything goes wrong.
        assert.deepEqual(files(`artifact-backup/${backupBucket}/${prefix}/${modelDir}`), names);

        // The mistake: the model's directory erased with every version (MLflow's own user could only hide it behind delete markers).
        mc("rm", "--recursive", "--versions", "--force", `root/${bucket}/${modelDir}`);
        assert.deepEqual(mc("ls", "--versions", "--recursive", `root/${bucket}/${modelDir}`).toString().trim(), "", "no version left to recover");
        const served = (name: string) => fetch(`${p.uiUrl}/api/2.0/mlflow-artifacts/artifacts/${modelDir}${name}`, { headers: basicAuth(p.login.user, p.login.password) });
        assert.notEqual((await served("model.skops")).status, 200, "MLflow no longer has the model file");

        // The restore (README "Restoring a backup"): mc mirror from the backup prefix into the bucket, as MLflow's user.
        await timed("artifact restore", () => mc("mirror", "--quiet", `artifact-backup/${backupBucket}/${prefix}/${modelDir}`, `artifacts/${bucket}/${modelDir}`));
        assert.deepEqual(files(`artifacts/${bucket}/${modelDir}`), names);
        for (const n of names) assert.ok(mc("cat", `artifacts/${bucket}/${modelDir}${n}`).equals(original[n]), `${n} differs after the restore`);
        const res = await served("model.skops");
        assert.equal(res.status, 200);
        assert.ok(Buffer.from(await res.arrayBuffer()).equals(original["model.skops"]), "MLflow serves the restored file, byte for byte");
    });
});
