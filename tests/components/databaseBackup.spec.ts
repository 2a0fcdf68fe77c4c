import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { DatabaseBackup, DatabaseBackupArgs, UPLOAD_SCRIPT } from "../../components/databaseBackup";
import { backupSchema } from "../../components/databaseBackup/schema";
import { DEFAULT_IMAGES } from "../../components/images";
import { assertRestricted, assertSelects, installMocks, only, resetRegistry, settle, T } from "../harness";

const dbEgress = { to: [{ podSelector: { matchLabels: { app: "db" } } }], ports: [{ protocol: "TCP", port: 5432 }] };
const s3Egress = { to: [{ podSelector: { matchLabels: { app: "minio" } } }], ports: [{ protocol: "TCP", port: 9000 }] };
const fixture = (overrides: Partial<DatabaseBackupArgs> = {}): DatabaseBackupArgs => ({
    namespace: "ml",
    database: { host: "db.ml.svc", port: 5432, databaseName: "mlflow", user: "mlflow", sslMode: "prefer", passwordSecretName: "db-secret", clientEgress: dbEgress },
    dumpImage: DEFAULT_IMAGES.postgres,
    uploadImage: DEFAULT_IMAGES.minioClient,
    store: { endpoint: "http://minio.ml.svc:9000", bucket: "mlflow-backups", credentialsSecretName: "backup-secret", clientEgress: s3Egress },
    config: backupSchema.parse({ retain: 5, scratchSize: "3Gi" }),
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

    it("dumps with pg_dump in custom format, password from a mounted file, then uploads", async () => {
        const cj = await build("bk-dump");
        const pod = cj.spec.jobTemplate.spec.template.spec;
        const dump = pod.initContainers[0];
        assert.equal(dump.image, DEFAULT_IMAGES.postgres);
        assert.deepEqual(dump.args.slice(0, 2), ["pg_dump", "--format=custom"]);
        assert.ok(!dump.env.some((e: any) => e.name === "PGPASSWORD"), "password must not be in the spec");
        const dbSecret = pod.volumes.find((v: any) => v.name === "db-secret").secret;
        assert.deepEqual(dbSecret.items, [{ key: "password", path: "PGPASSWORD" }]);
        const upload = pod.containers[0];
        assert.equal(upload.command[2], UPLOAD_SCRIPT);
        const env = Object.fromEntries(upload.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.BACKUP_BUCKET, "mlflow-backups");
        assert.equal(env.RETAIN, "5");
        assert.equal(pod.volumes.find((v: any) => v.name === "dump").emptyDir.sizeLimit, "3Gi");
        assertRestricted(pod, assert);
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

    it("keeps the newest dumps and deletes every version of older ones", () => {
        assert.match(UPLOAD_SCRIPT, /sort -r \| tail -n \+\$\(\(RETAIN \+ 1\)\)/);
        assert.match(UPLOAD_SCRIPT, /mc rm --quiet --versions --force/);
        assert.match(UPLOAD_SCRIPT, /test -s "\$DUMP"/, "an empty dump must fail the job, not replace a good backup");
    });

});
