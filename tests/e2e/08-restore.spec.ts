// Restore drill (issue 6): run the rendered backup CronJob's pod once (its pg_dump command, then its
// upload script with mc against the local MinIO), fetch the dump from the backup bucket as the backup
// user, restore it with pg_restore into a NEW database, and compare every MLflow table row for row:
// runs, params, metrics, registry content.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { LocalPlatform } from "../../scripts/local/platform";
import { E2E_DIR, platformUp, timed, wineExample } from "./fixture";

function sh(p: LocalPlatform, args: string[], env: Record<string, string> = {}): string {
    const r = spawnSync(args[0], args.slice(1), { env: { ...p.database, ...env }, encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
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

    before(async () => {
        p = await platformUp();
        await wineExample(p);
    });

    it("dumps and uploads with the rendered CronJob, restores into a new database, and the content is identical", async () => {
        const object = await timed("backup job", () => p.runBackup());
        assert.match(object, /^mlflow-\d{8}T\d{6}Z\.dump$/);

        // Fetch it the way an admin does (README "Restoring a backup"): mc as the backup user.
        const cron = p.stack.find("CronJob")[0].metadata.name;
        const upload = p.stack.podTemplate("CronJob", cron).spec.containers[0];
        const bucket = upload.env!.find((e) => e.name === "BACKUP_BUCKET")!.value!;
        const creds = p.stack.secretData("mlflow-artifacts-backup");
        const mcEnv = { MC_CONFIG_DIR: path.join(E2E_DIR, "restore-mc") };
        const endpoint = `http://127.0.0.1:${p.servicePort("mlflow-minio", 9000)}`;
        sh(p, [p.tools.mc, "alias", "set", "backups", endpoint, creds.AWS_ACCESS_KEY_ID, creds.AWS_SECRET_ACCESS_KEY], mcEnv);
        const listing = sh(p, [p.tools.mc, "ls", `backups/${bucket}/`], mcEnv);
        assert.match(listing, new RegExp(object.replace(/\./g, "\\.")));
        const dump = path.join(E2E_DIR, "restore.dump");
        sh(p, [p.tools.mc, "cp", "--quiet", `backups/${bucket}/${object}`, dump], mcEnv);
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
});
