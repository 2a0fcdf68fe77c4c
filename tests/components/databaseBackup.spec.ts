import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { BACKUP_SCRIPT, DatabaseBackup, DatabaseBackupArgs, INSTALL_MC_SCRIPT, PIPE_PART_SIZE } from "../../components/databaseBackup";
import { backupSchema } from "../../components/databaseBackup/schema";
import { DEFAULT_IMAGES } from "../../components/images";
import { ephemeralStorageFit } from "../../policy/lib/ephemeralStorage";
import { assertRestricted, assertSelects, assertWatches, installMocks, only, resetRegistry, settle, T } from "../harness";

const dbEgress = { to: [{ podSelector: { matchLabels: { app: "db" } } }], ports: [{ protocol: "TCP", port: 5432 }] };
const s3Egress = { to: [{ podSelector: { matchLabels: { app: "minio" } } }], ports: [{ protocol: "TCP", port: 9000 }] };
const fixture = (overrides: Partial<DatabaseBackupArgs> = {}): DatabaseBackupArgs => ({
    namespace: "ml",
    database: { host: "db.ml.svc", port: 5432, databaseName: "mlflow", user: "mlflow", sslMode: "prefer", passwordSecretName: "db-secret", clientEgress: dbEgress },
    dumpImage: DEFAULT_IMAGES.postgres,
    uploadImage: DEFAULT_IMAGES.minioClient,
    store: { endpoint: "http://minio.ml.svc:9000", bucket: "mlflow-backups", credentialsSecretName: "backup-secret", clientEgress: s3Egress },
    config: backupSchema.parse({ retain: 5 }),
    ...overrides,
});

async function build(name: string, overrides: Partial<DatabaseBackupArgs> = {}) {
    const backup = new DatabaseBackup(name, fixture(overrides), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(backup.cronJob);
    return only(T.CronJob, `${name}-cronjob`).inputs;
}

describe("DatabaseBackup", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("never overlaps, has a start deadline, a run deadline and bounded retries", async () => {
        const cj = await build("bk-sched");
        assert.equal(cj.spec.schedule, "17 2 * * *");
        assert.equal(cj.spec.concurrencyPolicy, "Forbid");
        assert.ok(cj.spec.startingDeadlineSeconds > 0);
        assert.ok(cj.spec.jobTemplate.spec.activeDeadlineSeconds > 0);
        assert.equal(cj.spec.jobTemplate.spec.backoffLimit, 2);
        assert.equal(cj.spec.jobTemplate.spec.ttlSecondsAfterFinished, undefined, "history limits clean up instead");
    });

    it("tells the backup alerts its CronJob's name, schedule interval and deadlines", async () => {
        const providers = [new k8s.Provider("bk-watch-k8s", {})];
        const make = (name: string, schedule?: string) => new DatabaseBackup(name, fixture({ config: backupSchema.parse({ schedule }) }), { providers });
        const [daily] = await assertWatches("bk-watch", make, [[undefined, 86400], ["0 3 * * 0", 7 * 86400]]);
        assert.equal(daily.runSeconds, 600 + 3600);
    });

    it("streams pg_dump into the bucket with the client image's mc, password from a mounted file, no spool volume", async () => {
        const cj = await build("bk-dump");
        const pod = cj.spec.jobTemplate.spec.template.spec;
        const [install] = pod.initContainers;
        assert.equal(install.image, DEFAULT_IMAGES.minioClient, "mc comes from the object store's client image");
        assert.deepEqual(install.command, ["/bin/sh", "-c", INSTALL_MC_SCRIPT]);
        const toolsDir = install.env.find((e: any) => e.name === "TOOLS_DIR").value;
        assert.deepEqual(install.volumeMounts, [{ name: "dump-tools", mountPath: toolsDir }]);

        assert.equal(pod.containers.length, 1);
        const dump = pod.containers[0];
        assert.equal(dump.image, DEFAULT_IMAGES.postgres);
        assert.deepEqual(dump.args, ["bash", "-c", BACKUP_SCRIPT]);
        const env = Object.fromEntries(dump.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.MC, `${toolsDir}/mc`, "the script runs the copied mc");
        assert.equal(env.BACKUP_BUCKET, "mlflow-backups");
        assert.equal(env.RETAIN, "5");
        assert.equal(env.PGHOST, "db.ml.svc");
        assert.equal(env.PGPASSWORD, undefined, "password must not be in the spec");
        assert.equal(dump.volumeMounts.find((m: any) => m.name === "dump-tools").readOnly, true);
        const dbSecret = pod.volumes.find((v: any) => v.name === "dump-db-secret").secret;
        assert.deepEqual(dbSecret.items, [{ key: "password", path: "PGPASSWORD" }]);

        // Only the mc binary and mc's config take disk space: nothing grows with the database.
        assert.deepEqual(pod.volumes.filter((v: any) => v.emptyDir).map((v: any) => [v.name, v.emptyDir.sizeLimit]), [["dump-tools", "96Mi"], ["dump-tmp", "16Mi"]]);
        assert.deepEqual(ephemeralStorageFit(pod).problems, []);
        assert.equal(ephemeralStorageFit(pod).podLimit, 256 * 2 ** 20);
        assertRestricted(pod, assert);
    });

    it("pipes pg_dump into incoming/ with bounded parts and moves it only after the PGDMP check", () => {
        const lines = BACKUP_SCRIPT.split("\n");
        const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
        assert.equal(lines[0], "set -euo pipefail", "a failing pg_dump must fail the pipeline");
        const pipe = at(/^pg_dump --format=custom --no-owner \| "\$MC" pipe/);
        assert.ok(pipe > 0 && lines[pipe].includes(`--part-size ${PIPE_PART_SIZE}`) && lines[pipe].endsWith('"$incoming"'));
        assert.ok(at(/PGDMP/) > pipe && at(/"\$MC" mv/) > at(/PGDMP/), "mv comes after the magic check");
    });

    it("is a client of the database and the object store, and may reach nothing else", async () => {
        const cj = await build("bk-net");
        const podLabels = cj.spec.jobTemplate.spec.template.metadata.labels;
        assert.equal(podLabels["mlflow-platform.io/database-client"], "true");
        assert.equal(podLabels["mlflow-platform.io/artifacts-client"], "true");
        const policy = only(T.NetworkPolicy, "bk-net-netpol").inputs;
        assertSelects(policy.spec.podSelector.matchLabels, podLabels, "policy must select the backup pods");
        assert.deepEqual(policy.spec.ingress, []);
        assert.deepEqual(policy.spec.egress.slice(1), [dbEgress, s3Egress]);
    });
});
