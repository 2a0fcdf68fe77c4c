import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { DEFAULT_IMAGES } from "../../components/images";
import {
    ARTIFACT_BACKUP_PREFIX,
    ARTIFACT_BACKUP_USER,
    artifactBackupPolicy,
    BACKUP_USER,
    bucketPolicy,
    rolePolicy,
    ObjectStore,
    ObjectStoreArgs,
    PROVISION_SCRIPT,
    READ_ONLY_USER,
    READ_WRITE_USER,
} from "../../components/objectStore";
import { objectStoreSchema } from "../../components/objectStore/schema";
import { assertRestricted, assertSelects, find, installMocks, isSecretValue, only, out, resetRegistry, smallResources, T, unsecret } from "../harness";

type ObjectStoreInput = z.input<typeof objectStoreSchema>;

const fixture = (config: ObjectStoreInput = {}, credentials?: ObjectStoreArgs["credentials"]): ObjectStoreArgs => ({
    namespace: "ml",
    config: objectStoreSchema.parse({ storageSize: "9Gi", bucket: "artifacts", resources: smallResources, ...config }),
    credentials,
    retainOnDestroy: true,
});

async function build(name: string, config: ObjectStoreInput = {}, credentials?: ObjectStoreArgs["credentials"]) {
    const store = new ObjectStore(name, fixture(config, credentials), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await out(store.ready);
    await out(store.readOnlySecretName);
    return store;
}

describe("ObjectStore", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("runs MinIO from a pinned, patched image with credentials from a mounted env file", async () => {
        const store = await build("os-minio");
        const sts = only(T.StatefulSet, "os-minio-statefulset").inputs;
        const spec = sts.spec.template.spec;
        const c = spec.containers[0];
        assert.equal(c.image, DEFAULT_IMAGES.minio);
        assert.match(c.image, /RELEASE\.2025-10-15T17-29-55Z/, "must include the CVE-2025-62506 fix");
        const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.MINIO_CONFIG_ENV_FILE, "/run/secrets/minio/config.env");
        assert.equal(env.MINIO_ROOT_PASSWORD, undefined);
        assert.deepEqual(sts.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: "Retain", whenScaled: "Retain" });
        assert.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, "9Gi");
        assert.notDeepEqual(c.livenessProbe, c.readinessProbe);
        assertRestricted(spec, assert);
        assert.equal(await out(store.endpoint), "http://os-minio-minio.ml.svc:9000");
        const root = unsecret(only(T.Secret, "os-minio-root").inputs.stringData);
        assert.match(root["config.env"], /^MINIO_ROOT_USER=\S+\nMINIO_ROOT_PASSWORD=\S{40}\n$/);
    });

    it("provisions a versioned, private bucket and two least-privilege users in an idempotent Job", async () => {
        const store = await build("os-job");
        const job = only(T.Job, "os-job-provision");
        const spec = job.inputs.spec.template.spec;
        const c = spec.containers[0];
        assert.equal(c.image, DEFAULT_IMAGES.minioClient);
        const script: string = c.command[2];
        assert.equal(script, PROVISION_SCRIPT);
        assert.match(script, /for bucket in "\$BUCKET" "\$BACKUP_BUCKET"; do\n  mc mb --ignore-existing/);
        const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.BACKUP_BUCKET, "artifacts-backups");
        assert.match(script, /mc version enable/);
        assert.match(script, /mc anonymous set private/);
        assert.doesNotMatch(script, /anonymous set (download|public|upload)/);
        assertRestricted(spec, assert);
        // The Job runs after MinIO is up, and `ready` waits for the Job.
        only(T.StatefulSet, "os-job-statefulset");
        assert.ok(job.dependencies.some((urn) => urn.endsWith("::os-job-statefulset")), "Job must wait for MinIO");
        assert.equal(await out(store.ready), "artifacts");
    });

    it("grants read-write to MLflow and read-only to serving, on the artifact bucket only", async () => {
        await build("os-policy");
        const cm = only(T.ConfigMap, "os-policy-policies").inputs.data;
        const rw = JSON.parse(cm["readwrite.json"]);
        const ro = JSON.parse(cm["readonly.json"]);
        assert.deepEqual(rw, bucketPolicy("artifacts", "readwrite"));
        const actions = (p: any) => p.Statement.flatMap((s: any) => s.Action);
        const resources = (p: any) => p.Statement.flatMap((s: any) => s.Resource);
        assert.ok(actions(rw).includes("s3:PutObject"));
        assert.ok(!actions(ro).some((a: string) => /Put|Delete|Abort/.test(a)), "read-only user must not write");
        for (const r of [...resources(rw), ...resources(ro)]) assert.match(r, /^arn:aws:s3:::artifacts(\/\*)?$/);
        const backup = JSON.parse(cm["backup.json"]);
        assert.deepEqual(backup, rolePolicy({ bucket: "artifacts", backupBucket: "artifacts-backups" }, "backup"));
        const allowed = { ...backup, Statement: backup.Statement.filter((st: any) => st.Effect === "Allow") };
        assert.deepEqual(allowed, bucketPolicy("artifacts-backups", "backup"));
        for (const r of resources(backup)) assert.match(r, /^arn:aws:s3:::artifacts-backups(\/\*|\/artifacts\/\*)?$/, "backup user is confined to the backup bucket");
        // ...and kept off the artifact copy beside the dumps.
        const denied = backup.Statement.filter((st: any) => st.Effect === "Deny");
        assert.deepEqual(denied.map((st: any) => st.Resource), [[`arn:aws:s3:::artifacts-backups/${ARTIFACT_BACKUP_PREFIX}/*`]]);
        assert.ok(["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"].every((a) => denied[0].Action.includes(a)));
        assert.ok(actions(backup).includes("s3:DeleteObjectVersion"), "retention must be able to delete old versions");
        assert.ok(!actions(rw).includes("s3:DeleteObjectVersion"), "MLflow cannot destroy object history");
        const users = (role: string) => unsecret(only(T.Secret, `os-policy-${role}`).inputs.stringData);
        assert.equal(users("readwrite").AWS_ACCESS_KEY_ID, READ_WRITE_USER);
        assert.equal(users("readonly").AWS_ACCESS_KEY_ID, READ_ONLY_USER);
        assert.equal(users("backup").AWS_ACCESS_KEY_ID, BACKUP_USER);
        assert.notEqual(users("readwrite").AWS_SECRET_ACCESS_KEY, users("readonly").AWS_SECRET_ACCESS_KEY);
        assert.ok(isSecretValue(only(T.Secret, "os-policy-readwrite").inputs.stringData));
    });

    it("provisions the artifact backup user: reads the artifact bucket, writes only <backupBucket>/artifacts/, deletes nothing", async () => {
        const store = await build("os-mirror");
        const cm = only(T.ConfigMap, "os-mirror-policies").inputs.data;
        const mirror = JSON.parse(cm["mirror.json"]);
        assert.deepEqual(mirror, artifactBackupPolicy("artifacts", "artifacts-backups"));
        const grants = (resource: string) => mirror.Statement.filter((st: any) => st.Resource.includes(resource)).flatMap((st: any) => st.Action).sort();
        assert.deepEqual(grants("arn:aws:s3:::artifacts/*"), ["s3:GetObject"], "read-only on the artifacts");
        assert.deepEqual(grants(`arn:aws:s3:::artifacts-backups/${ARTIFACT_BACKUP_PREFIX}/*`), ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"]);
        assert.deepEqual(grants("arn:aws:s3:::artifacts-backups/*"), [], "no rights on the dumps");
        assert.ok(!mirror.Statement.flatMap((st: any) => st.Action).some((a: string) => /Delete/.test(a)), "the backup user deletes nothing");
        const list = mirror.Statement.find((st: any) => st.Resource.includes("arn:aws:s3:::artifacts-backups") && st.Action.includes("s3:ListBucket"));
        assert.deepEqual(list?.Condition, { StringLike: { "s3:prefix": [ARTIFACT_BACKUP_PREFIX, `${ARTIFACT_BACKUP_PREFIX}/*`] } });
        // The Job provisions it like the other users: its Secret mounted, its policy attached by the loop.
        const job = only(T.Job, "os-mirror-provision").inputs.spec.template.spec;
        assert.match(PROVISION_SCRIPT, /^for role in readwrite readonly backup mirror; do$/m);
        assert.ok(job.containers[0].volumeMounts.some((m: any) => m.name === "mirror" && m.mountPath === "/run/secrets/users/mirror"));
        const secret = only(T.Secret, "os-mirror-mirror");
        assert.equal(unsecret(secret.inputs.stringData).AWS_ACCESS_KEY_ID, ARTIFACT_BACKUP_USER);
        assert.equal(secret.inputs.metadata.name, "os-mirror-artifacts-mirror");
        assert.equal(await out(store.artifactBackupSecretName), "os-mirror-artifacts-mirror");
        assert.equal(store.artifactBackupPrefix, ARTIFACT_BACKUP_PREFIX);
    });

    it("admits only labelled artifact clients; the provisioning Job may reach only MinIO", async () => {
        const store = await build("os-net");
        const policy = only(T.NetworkPolicy, "os-net-netpol").inputs;
        assert.deepEqual(policy.spec.ingress[0].from, [{ podSelector: { matchLabels: { "mlflow-platform.io/artifacts-client": "true" } } }]);
        assert.deepEqual(policy.spec.ingress[0].ports, [{ protocol: "TCP", port: 9000 }]);
        const provision = only(T.NetworkPolicy, "os-net-provision-netpol").inputs;
        assert.deepEqual(provision.spec.egress.slice(1), [await out(store.clientEgress)]);
        const jobLabels = only(T.Job, "os-net-provision").inputs.spec.template.metadata.labels;
        assert.equal(jobLabels["mlflow-platform.io/artifacts-client"], "true");
        assertSelects(provision.spec.podSelector.matchLabels, jobLabels, "policy must select the provisioning Job pods");
    });

    it("in s3 mode uses the given endpoint and credentials and runs nothing", async () => {
        const store = await build(
            "os-s3",
            { mode: "s3", endpoint: "https://s3.eu-west-1.amazonaws.com", region: "eu-west-1" },
            { accessKeyId: pulumi.secret("AKIAEXAMPLE"), secretAccessKey: pulumi.secret("secret/with+chars") },
        );
        assert.equal(find(T.StatefulSet).filter((r) => r.name.startsWith("os-s3")).length, 0);
        assert.equal(find(T.Job).filter((r) => r.name.startsWith("os-s3")).length, 0);
        assert.equal(await out(store.endpoint), "https://s3.eu-west-1.amazonaws.com");
        assert.deepEqual(await out(store.clientEgress), { to: [{ ipBlock: { cidr: "0.0.0.0/0" } }], ports: [{ protocol: "TCP", port: 443 }] });
        const ro = unsecret(only(T.Secret, "os-s3-readonly").inputs.stringData);
        assert.equal(ro.AWS_ACCESS_KEY_ID, "AKIAEXAMPLE", "read-only falls back to the read-write pair");
        const mirror = unsecret(only(T.Secret, "os-s3-mirror").inputs.stringData);
        assert.equal(mirror.AWS_ACCESS_KEY_ID, "AKIAEXAMPLE", "the artifact backup uses the read-write pair, as the database backup does");
    });
});
