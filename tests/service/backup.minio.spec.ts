// Service tier: the backup CronJob's script (components/databaseBackup BACKUP_SCRIPT) against a real
// MinIO with a versioned bucket, with stand-ins for pg_dump that succeed, fail halfway through the
// stream, or print something that is not a dump. Proves that the dump streams into the bucket, that a
// failed or bogus dump never replaces or joins the good ones and leaves no object version behind, and
// that retention keeps the newest dumps. (e2e 08 runs the same script on the local platform with the
// real pg_dump, then restores it.)
import assert from "assert/strict";
import { spawnSync } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { BACKUP_SCRIPT, dumpScript, INSTALL_MC_SCRIPT } from "../../components/databaseBackup";
import { NO_DUMP_NEEDED, PRE_UPGRADE_PREFIX, UPGRADE_PLANNED } from "../../components/trackingServer/upgrade";
import { credentialsDir, RunningMinio, startMinio } from "./minio";
import { INSTALL_TIMEOUT_MS } from "../harness";

const BUCKET = "mlflow-backups";

/** A pg_dump stand-in: the shell body it runs (stdout is the dump). */
const PG_DUMPS = {
    good: `cat "$DUMP_SOURCE"`,
    // Custom-format header and some data, then the connection drops.
    failsHalfway: `printf 'PGDMP'; head -c 200000 /dev/urandom; echo "pg_dump: error: connection lost" >&2; exit 1`,
    // Succeeds but writes text (a plain-format dump or an error page), not the custom format.
    notADump: `echo "-- PostgreSQL database dump"; echo "SELECT 1;"`,
};

describe("service: the backup script streams into a real MinIO", function () {
    this.timeout(120_000);
    let minio: RunningMinio;
    let dir: string;
    const admin = (...args: string[]) => minio.admin(...args);
    /** Object names at the top of the bucket, and every version (delete markers too) under incoming/. */
    const dumps = () => admin("ls", `store/${BUCKET}/`).split("\n").map((l) => l.trim().split(/\s+/).pop()!).filter((n) => n && n !== "incoming/" && n !== PRE_UPGRADE_PREFIX).sort();
    const incomingVersions = () => admin("ls", "--versions", "--recursive", `store/${BUCKET}/incoming/`).trim();

    /** Runs the script as the dump container does: mc from the tools directory the init container filled. */
    function backup(pgDump: keyof typeof PG_DUMPS, retain = 7, o: { script?: string; env?: Record<string, string> } = {}) {
        const fake = path.join(dir, `pg-${pgDump}`);
        fs.mkdirSync(fake, { recursive: true });
        fs.writeFileSync(path.join(fake, "pg_dump"), `#!/bin/sh\n${PG_DUMPS[pgDump]}\n`, { mode: 0o755 });
        const env = {
            PATH: `${fake}:/usr/bin:/bin`,
            MC: path.join(dir, "tools", "mc"),
            S3_ENDPOINT: minio.endpoint,
            BACKUP_BUCKET: BUCKET,
            RETAIN: String(retain),
            CREDS_DIR: path.join(dir, "creds"),
            MC_CONFIG_DIR: path.join(dir, "mc-job"),
            DUMP_SOURCE: path.join(dir, "dump-source"),
            ...o.env,
        };
        return spawnSync("bash", ["-c", o.script ?? BACKUP_SCRIPT], { env, encoding: "utf8" });
    }
    const uploadedName = (stdout: string) => /^uploaded (mlflow-\d{8}T\d{6}Z\.dump) to /m.exec(stdout)?.[1];
    /** Dump names have one-second resolution: the next run must start in a new second. */
    const nextSecond = () => new Promise((r) => setTimeout(r, 1100));

    before(async function () {
        this.timeout(INSTALL_TIMEOUT_MS);
        minio = await startMinio("backup-service");
        dir = minio.dir;
        admin("mb", `store/${BUCKET}`);
        admin("version", "enable", `store/${BUCKET}`);
        fs.writeFileSync(path.join(dir, "dump-source"), Buffer.concat([Buffer.from("PGDMP"), randomBytes(300_000)]));
        credentialsDir(path.join(dir, "creds"), minio.rootUser, minio.rootPassword);
        // The init container's step, with mc on PATH as in the client image.
        fs.mkdirSync(path.join(dir, "tools"));
        const install = spawnSync("/bin/sh", ["-c", INSTALL_MC_SCRIPT], { env: { PATH: `${path.dirname(minio.mc)}:/usr/bin:/bin`, TOOLS_DIR: path.join(dir, "tools") }, encoding: "utf8" });
        assert.equal(install.status, 0, install.stderr);
    });

    after(() => minio?.stop());

    it("streams a good dump to its final name, byte for byte, and leaves nothing under incoming/", async () => {
        const r = backup("good");
        assert.equal(r.status, 0, r.stderr);
        const name = uploadedName(r.stdout);
        assert.ok(name, r.stdout);
        assert.deepEqual(dumps(), [name]);
        const stored = spawnSync(minio.mc, ["cat", `store/${BUCKET}/${name}`], { env: minio.adminEnv() }).stdout;
        assert.ok(stored.equals(fs.readFileSync(path.join(dir, "dump-source"))), "the stored dump is what pg_dump wrote");
        assert.equal(incomingVersions(), "", "every version of the incoming object is removed");
        await nextSecond();
    });

    it("refuses a pg_dump that fails halfway: the good dump stays the only one, no version is left", async () => {
        const before = dumps();
        const r = backup("failsHalfway");
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /connection lost/);
        assert.equal(uploadedName(r.stdout), undefined);
        assert.deepEqual(dumps(), before);
        assert.equal(incomingVersions(), "");
        await nextSecond();
    });

    it("refuses output that is not a custom-format dump, naming why", async () => {
        const before = dumps();
        const r = backup("notADump");
        assert.equal(r.status, 1);
        assert.match(r.stderr, /does not start with PGDMP: not a custom-format dump, refused/);
        assert.deepEqual(dumps(), before);
        assert.equal(incomingVersions(), "");
        await nextSecond();
    });

    it("removes what a killed run left under incoming/ before it starts", async () => {
        const leftover = path.join(dir, "leftover");
        fs.writeFileSync(leftover, "PGDMP partial");
        admin("cp", leftover, `store/${BUCKET}/incoming/mlflow-20260101T000000Z.dump`);
        const r = backup("good");
        assert.equal(r.status, 0, r.stderr);
        assert.equal(incomingVersions(), "");
        await nextSecond();
    });

    it("keeps the newest RETAIN dumps and deletes every version of the older ones", async () => {
        const r = backup("good", 2);
        assert.equal(r.status, 0, r.stderr);
        const kept = dumps();
        assert.equal(kept.length, 2);
        assert.equal(kept[1], uploadedName(r.stdout));
        const versions = admin("ls", "--versions", "--recursive", `store/${BUCKET}/`).split("\n").filter((l) => /mlflow-\d/.test(l) && !l.includes("incoming/"));
        assert.equal(versions.length, 2, `only the kept dumps have versions:\n${versions.join("\n")}`);
    });

    describe("before a schema upgrade: the migration Job's dump step (the same script, under pre-upgrade/)", () => {
        const preUpgrade = dumpScript({ test: UPGRADE_PLANNED, skipped: NO_DUMP_NEEDED });
        const planned = (plan: string) => {
            const file = path.join(dir, "plan");
            fs.writeFileSync(file, `${plan}\n`);
            return { DUMP_PREFIX: PRE_UPGRADE_PREFIX, PLAN_FILE: file };
        };
        const preUpgradeDumps = () => admin("ls", `store/${BUCKET}/${PRE_UPGRADE_PREFIX}`).split("\n").map((l) => l.trim().split(/\s+/).pop()!).filter((n) => n && n !== "incoming/").sort();

        it("with an upgrade planned, dumps under pre-upgrade/, byte for byte, apart from the nightly dumps and their retention", async () => {
            const nightly = dumps();
            const r = backup("good", 3, { script: preUpgrade, env: planned("upgrade 1b5f0d9ad7c1 dc11669786a5") });
            assert.equal(r.status, 0, r.stderr);
            assert.match(r.stdout, /^uploaded pre-upgrade\/mlflow-\d{8}T\d{6}Z\.dump to mlflow-backups; kept the newest 3$/m);
            const [name] = preUpgradeDumps();
            assert.ok(name, "one dump under pre-upgrade/");
            const back = path.join(dir, "pre-upgrade-back");
            admin("cp", `store/${BUCKET}/${PRE_UPGRADE_PREFIX}${name}`, back);
            assert.ok(fs.readFileSync(back).equals(fs.readFileSync(path.join(dir, "dump-source"))), "the dump as pg_dump wrote it");
            assert.deepEqual(dumps(), nightly, "the nightly dumps are untouched");
            // The nightly run's retention (here: keep one) never removes a pre-upgrade dump.
            await nextSecond();
            assert.equal(backup("good", 1).status, 0);
            assert.equal(dumps().length, 1);
            assert.deepEqual(preUpgradeDumps(), [name]);
            await nextSecond();
        });

        it("with no upgrade planned (a fresh or current schema), uploads nothing and succeeds", async () => {
            const before = preUpgradeDumps();
            for (const plan of ["fresh", "current"]) {
                const r = backup("good", 3, { script: preUpgrade, env: planned(plan) });
                assert.equal(r.status, 0, r.stderr);
                assert.equal(r.stdout.trim(), NO_DUMP_NEEDED);
            }
            assert.deepEqual(preUpgradeDumps(), before);
        });

        it("a failed dump fails the step, so the migration never runs without its dump", async () => {
            const before = preUpgradeDumps();
            const r = backup("failsHalfway", 3, { script: preUpgrade, env: planned("upgrade a b") });
            assert.notEqual(r.status, 0);
            assert.deepEqual(preUpgradeDumps(), before);
        });
    });
});
