// Service tier: the artifact backup CronJob's script (components/artifactBackup MIRROR_SCRIPT) against a
// real MinIO whose buckets and users the real provisioning script (components/objectStore
// PROVISION_SCRIPT) made with the rendered policies, run as the artifact backup user. Proves that the
// artifacts and their content appear under the backup prefix, that a second run copies only what
// changed (each copy is a new version in the versioned backup bucket, so version counts show what was
// copied), that an artifact deleted from the artifact bucket, even with all its versions, stays in the
// backup (there is no --remove), and that the backup user can delete nothing and touch no dump.
// (e2e 08 runs the same CronJob on the local platform after MLflow logged a model, then restores.)
import assert from "assert/strict";
import { spawnSync } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { MIRROR_SCRIPT } from "../../components/artifactBackup";
import { ARTIFACT_BACKUP_PREFIX, ARTIFACT_BACKUP_USER, BACKUP_USER, PROVISION_SCRIPT, READ_ONLY_USER, READ_WRITE_USER, Role, rolePolicy } from "../../components/objectStore";
import { credentialsDir, RunningMinio, startMinio } from "./minio";
import { INSTALL_TIMEOUT_MS } from "../harness";

const BUCKET = "mlflow";
const BACKUP_BUCKET = "mlflow-backups";
const USERS: Record<Role, string> = { readwrite: READ_WRITE_USER, readonly: READ_ONLY_USER, backup: BACKUP_USER, mirror: ARTIFACT_BACKUP_USER };

describe("service: the artifact backup mirrors into a real MinIO as its least-privilege user", function () {
    this.timeout(120_000);
    let minio: RunningMinio;
    /** Artifacts as MLflow lays them out (experiment/run/artifacts/…, logged models), by key. */
    const artifacts: Record<string, Buffer> = {
        "1/0f1e2d3c4b5a/artifacts/model/MLmodel": Buffer.from("artifact_path: model\nflavors:\n  sklearn: {}\n"),
        "1/0f1e2d3c4b5a/artifacts/model/model.pkl": randomBytes(200_000),
        "1/0f1e2d3c4b5a/artifacts/plots/confusion matrix.png": randomBytes(30_000),
        "1/models/m-abc123/artifacts/MLmodel": Buffer.from("flavors: {}\n"),
        // Over mc's multipart threshold (16 MiB with the default part size), so the multipart actions are needed.
        "2/9a8b7c/artifacts/big.bin": randomBytes(20 * 2 ** 20),
    };

    const as = (role: Role) => path.join(minio.dir, "creds", role);
    /** mc as one of the provisioned users (its own alias `u` and config directory). */
    function mcAs(role: Role, ...args: string[]) {
        const env = { ...process.env, MC_CONFIG_DIR: path.join(minio.dir, `mc-${role}`) };
        const keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].map((k) => fs.readFileSync(path.join(as(role), k), "utf8"));
        spawnSync(minio.mc, ["alias", "set", "u", minio.endpoint, ...keys], { env });
        return spawnSync(minio.mc, args, { env, encoding: "utf8" });
    }
    /** Runs the script as the CronJob's container does: the client image's mc on PATH, the user's Secret mounted. */
    function mirror(role: Role | string = "mirror") {
        const env = {
            PATH: `${path.dirname(minio.mc)}:/usr/bin:/bin`,
            S3_ENDPOINT: minio.endpoint,
            ARTIFACT_BUCKET: BUCKET,
            BACKUP_BUCKET,
            BACKUP_PREFIX: ARTIFACT_BACKUP_PREFIX,
            CREDS_DIR: role in USERS ? as(role as Role) : role,
            MC_CONFIG_DIR: path.join(minio.dir, `mc-job-${path.basename(role)}`),
        };
        return spawnSync("/bin/sh", ["-c", MIRROR_SCRIPT], { env, encoding: "utf8" });
    }
    const put = (key: string, body: Buffer) => {
        const file = path.join(minio.dir, "upload");
        fs.writeFileSync(file, body);
        minio.admin("cp", "--quiet", file, `store/${BUCKET}/${key}`);
    };
    const backedUp = (key: string) => spawnSync(minio.mc, ["cat", `store/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/${key}`], { env: minio.adminEnv(), maxBuffer: 64 * 2 ** 20 }).stdout;
    /** Number of versions of each object under the backup prefix, by key. */
    function backupVersions(): Record<string, number> {
        const lines = minio.admin("ls", "--versions", "--recursive", "--json", `store/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/`).trim().split("\n").filter(Boolean);
        const counts: Record<string, number> = {};
        for (const l of lines) {
            const o = JSON.parse(l);
            if (o.type === "file" && !o.isDeleteMarker) counts[o.key] = (counts[o.key] ?? 0) + 1;
        }
        return counts;
    }

    before(async function () {
        this.timeout(INSTALL_TIMEOUT_MS);
        minio = await startMinio("artifact-backup");
        // The provisioning Job's inputs, as its pod mounts them: root Secret, each user's Secret, the policies ConfigMap.
        const root = credentialsDir(path.join(minio.dir, "root"), "", "");
        fs.writeFileSync(path.join(root, "rootUser"), minio.rootUser);
        fs.writeFileSync(path.join(root, "rootPassword"), minio.rootPassword);
        const policies = path.join(minio.dir, "policies");
        fs.mkdirSync(policies);
        for (const role of Object.keys(USERS) as Role[]) {
            credentialsDir(as(role), USERS[role], randomBytes(20).toString("hex"));
            fs.writeFileSync(path.join(policies, `${role}.json`), JSON.stringify(rolePolicy({ bucket: BUCKET, backupBucket: BACKUP_BUCKET }, role), null, 2));
        }
        const env = {
            PATH: `${path.dirname(minio.mc)}:/usr/bin:/bin`,
            MINIO_ENDPOINT: minio.endpoint,
            BUCKET,
            BACKUP_BUCKET,
            ROOT_DIR: root,
            CREDS_DIR: path.join(minio.dir, "creds"),
            POLICY_DIR: policies,
            MC_CONFIG_DIR: path.join(minio.dir, "mc-provision"),
        };
        const r = spawnSync("/bin/sh", ["-c", PROVISION_SCRIPT], { env, encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        for (const [key, body] of Object.entries(artifacts)) put(key, body);
        // A database dump beside the prefix, as the database backup leaves them.
        const dump = path.join(minio.dir, "dump");
        fs.writeFileSync(dump, "PGDMP…");
        minio.admin("cp", "--quiet", dump, `store/${BACKUP_BUCKET}/mlflow-20260101T000000Z.dump`);
    });

    after(() => minio?.stop());

    it("copies every artifact, byte for byte, under <backupBucket>/artifacts/", () => {
        const r = mirror();
        assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
        assert.match(r.stdout, new RegExp(`^mirrored ${BUCKET} into ${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/$`, "m"));
        for (const [key, body] of Object.entries(artifacts)) assert.ok(backedUp(key).equals(body), `${key} differs in the backup`);
        assert.deepEqual(Object.keys(backupVersions()).sort(), Object.keys(artifacts).sort(), "the backup holds the artifacts and nothing else");
        assert.match(minio.admin("ls", `store/${BACKUP_BUCKET}/`), /mlflow-20260101T000000Z\.dump/, "the dumps are untouched");
    });

    it("copies only what changed on the next run: a new artifact and a rewritten one, nothing else", async () => {
        // mc compares sizes and modification times; the rewrite must be in a later second than the copy.
        await new Promise((r) => setTimeout(r, 1100));
        const changed = "1/0f1e2d3c4b5a/artifacts/model/model.pkl";
        artifacts[changed] = randomBytes(artifacts[changed].length); // same size, other content
        artifacts["1/0f1e2d3c4b5a/artifacts/metrics.json"] = Buffer.from('{"rmse": 0.61}');
        put(changed, artifacts[changed]);
        put("1/0f1e2d3c4b5a/artifacts/metrics.json", artifacts["1/0f1e2d3c4b5a/artifacts/metrics.json"]);
        const r = mirror();
        assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
        const versions = backupVersions();
        for (const key of Object.keys(artifacts)) assert.equal(versions[key], key === changed ? 2 : 1, `${key}: ${versions[key]} versions`);
        for (const [key, body] of Object.entries(artifacts)) assert.ok(backedUp(key).equals(body), `${key} differs in the backup`);
        // The copy it replaced is still a version of the backup bucket.
        const old = minio.admin("ls", "--versions", `store/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/${changed}`).trim().split("\n");
        assert.equal(old.length, 2, old.join("\n"));
    });

    it("keeps an artifact deleted from the artifact bucket, even with every version, in the backup (no --remove)", () => {
        const lost = "1/models/m-abc123/artifacts/MLmodel";
        minio.admin("rm", "--versions", "--force", `store/${BUCKET}/${lost}`);
        assert.notEqual(spawnSync(minio.mc, ["stat", `store/${BUCKET}/${lost}`], { env: minio.adminEnv() }).status, 0, "gone from the artifact bucket");
        const r = mirror();
        assert.equal(r.status, 0, `${r.stderr}${r.stdout}`);
        assert.ok(backedUp(lost).equals(artifacts[lost]), "still in the backup, as it was");
        assert.equal(backupVersions()[lost], 1);
        assert.doesNotMatch(MIRROR_SCRIPT, /--remove/);
    });

    it("runs as a user that can read the artifacts and write the prefix, and delete nothing or touch a dump; the dumps' user cannot touch the copy", () => {
        const denied = (what: string, r: ReturnType<typeof mcAs>) => assert.notEqual(r.status, 0, `${what} should be refused: ${r.stdout}`);
        const key = "1/0f1e2d3c4b5a/artifacts/model/MLmodel";
        denied("deleting a backed-up artifact", mcAs("mirror", "rm", "--force", `u/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/${key}`));
        denied("deleting a version of one", mcAs("mirror", "rm", "--versions", "--force", `u/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/${key}`));
        denied("deleting an artifact", mcAs("mirror", "rm", "--force", `u/${BUCKET}/${key}`));
        denied("writing the artifact bucket", mcAs("mirror", "cp", path.join(minio.dir, "upload"), `u/${BUCKET}/x`));
        denied("reading a dump", mcAs("mirror", "cat", `u/${BACKUP_BUCKET}/mlflow-20260101T000000Z.dump`));
        denied("overwriting a dump", mcAs("mirror", "cp", path.join(minio.dir, "upload"), `u/${BACKUP_BUCKET}/mlflow-20260101T000000Z.dump`));
        // Nor can the database backup's user, which may prune dumps in the same bucket.
        denied("the dumps' user deleting a backed-up artifact", mcAs("backup", "rm", "--force", `u/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/${key}`));
        denied("the dumps' user deleting a version of one", mcAs("backup", "rm", "--versions", "--force", `u/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/${key}`));
        denied("the dumps' user overwriting one", mcAs("backup", "cp", path.join(minio.dir, "upload"), `u/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/${key}`));
        assert.ok(backedUp(key).equals(artifacts[key]), "the backup is intact");
        // And MLflow's read-write user cannot write the backup: the run fails instead of reporting success.
        const rw = mirror("readwrite");
        assert.notEqual(rw.status, 0, `MLflow's read-write user must not be able to write the backup: ${rw.stdout}${rw.stderr}`);
        assert.match(rw.stderr, /could not compare mlflow with its copy:\n.*Access Denied/);
        assert.doesNotMatch(rw.stdout, /^mirrored /m);
    });

    it("fails, naming the objects, when mc mirror reports success but copied nothing (a user that may list the copy, not write it)", () => {
        const listOnly = rolePolicy({ bucket: BUCKET, backupBucket: BACKUP_BUCKET }, "mirror");
        listOnly.Statement = listOnly.Statement.map((st: any) => ({ ...st, Action: st.Action.filter((a: string) => a !== "s3:PutObject") }));
        const policy = path.join(minio.dir, "list-only.json");
        fs.writeFileSync(policy, JSON.stringify(listOnly));
        const secret = randomBytes(20).toString("hex");
        minio.admin("admin", "policy", "create", "store", "list-only", policy);
        minio.admin("admin", "user", "add", "store", "list-only-user", secret);
        minio.admin("admin", "policy", "attach", "store", "list-only", "--user", "list-only-user");
        const creds = credentialsDir(path.join(minio.dir, "creds-list-only"), "list-only-user", secret);
        const fresh = "3/c0ffee/artifacts/new.txt";
        put(fresh, Buffer.from("written after the last backup"));

        // mc itself says all is well: exit 0, a transfer summary (if mc ever reports it, the check stays a second line).
        const mcEnv = { ...process.env, MC_CONFIG_DIR: path.join(minio.dir, "mc-list-only") };
        spawnSync(minio.mc, ["alias", "set", "u", minio.endpoint, "list-only-user", secret], { env: mcEnv });
        const bare = spawnSync(minio.mc, ["mirror", "--overwrite", "--quiet", `u/${BUCKET}`, `u/${BACKUP_BUCKET}/${ARTIFACT_BACKUP_PREFIX}/`], { env: mcEnv, encoding: "utf8" });
        assert.equal(bare.status, 0, `mc mirror now fails on its own: ${bare.stderr}`);
        assert.equal(backedUp(fresh).length, 0, "and copied nothing");

        const r = mirror(creds);
        assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
        assert.ok(r.stderr.includes(`not in the backup after the mirror`) && r.stderr.includes(`< ${minio.endpoint}/${BUCKET}/${fresh}`), r.stderr);
        assert.doesNotMatch(r.stdout, /^mirrored /m);
    });
});
