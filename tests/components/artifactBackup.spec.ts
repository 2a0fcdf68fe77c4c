import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { ArtifactBackup, ArtifactBackupArgs, MIRROR_SCRIPT } from "../../components/artifactBackup";
import { artifactBackupSchema } from "../../components/artifactBackup/schema";
import { DEFAULT_IMAGES } from "../../components/images";
import { ephemeralStorageFit } from "../../policy/lib/ephemeralStorage";
import { assertRestricted, assertSelects, assertWatches, installMocks, only, resetRegistry, settle, T } from "../harness";

const s3Egress = { to: [{ podSelector: { matchLabels: { app: "minio" } } }], ports: [{ protocol: "TCP", port: 9000 }] };
const fixture = (overrides: Partial<ArtifactBackupArgs> = {}): ArtifactBackupArgs => ({
    namespace: "ml",
    clientImage: DEFAULT_IMAGES.minioClient,
    store: {
        endpoint: "http://minio.ml.svc:9000",
        bucket: "mlflow",
        backupBucket: "mlflow-backups",
        prefix: "artifacts",
        credentialsSecretName: "mirror-secret",
        clientEgress: s3Egress,
    },
    config: artifactBackupSchema.parse({}),
    ...overrides,
});

async function build(name: string, overrides: Partial<ArtifactBackupArgs> = {}) {
    const backup = new ArtifactBackup(name, fixture(overrides), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(backup.cronJob);
    return only(T.CronJob, `${name}-cronjob`).inputs;
}

describe("ArtifactBackup", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("runs on its own schedule (after the database dump's), never overlapping, with deadlines and bounded retries", async () => {
        const cj = await build("ab-sched");
        assert.equal(cj.metadata.name, "ab-sched-artifact-backup");
        assert.equal(cj.spec.schedule, "47 2 * * *");
        assert.equal(cj.spec.timeZone, "Etc/UTC");
        assert.equal(cj.spec.concurrencyPolicy, "Forbid");
        assert.ok(cj.spec.startingDeadlineSeconds > 0);
        assert.equal(cj.spec.jobTemplate.spec.activeDeadlineSeconds, 6 * 3600, "a big bucket's first mirror may take hours");
        assert.equal(cj.spec.jobTemplate.spec.backoffLimit, 2);
        const other = await build("ab-sched2", { config: artifactBackupSchema.parse({ schedule: "*/30 * * * *" }) });
        assert.equal(other.spec.schedule, "*/30 * * * *");
    });

    it("tells the backup alerts its CronJob's name, schedule interval and deadlines", async () => {
        const providers = [new k8s.Provider("ab-watch-k8s", {})];
        const make = (name: string, schedule?: string) => new ArtifactBackup(name, fixture({ config: artifactBackupSchema.parse({ schedule }) }), { providers });
        const [daily] = await assertWatches("ab-watch", make, [[undefined, 86400], ["*/30 * * * *", 1800]]);
        assert.equal(daily.runSeconds, 600 + 6 * 3600);
    });

    it("mirrors with the object store's client image, as the backup user whose keys are mounted files", async () => {
        const cj = await build("ab-mirror");
        const pod = cj.spec.jobTemplate.spec.template.spec;
        assert.equal(pod.initContainers, undefined);
        assert.equal(pod.containers.length, 1);
        const c = pod.containers[0];
        assert.equal(c.image, DEFAULT_IMAGES.minioClient, "mc comes from the object store's client image");
        assert.deepEqual(c.command, ["/bin/sh", "-c", MIRROR_SCRIPT]);
        const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));
        assert.deepEqual(
            { ...env, CREDS_DIR: undefined },
            { S3_ENDPOINT: "http://minio.ml.svc:9000", ARTIFACT_BUCKET: "mlflow", BACKUP_BUCKET: "mlflow-backups", BACKUP_PREFIX: "artifacts", MC_CONFIG_DIR: "/tmp/.mc", CREDS_DIR: undefined },
        );
        assert.ok(!c.env.some((e: any) => e.valueFrom), "no credential in env");
        const creds = pod.volumes.find((v: any) => v.secret);
        assert.deepEqual(creds.secret, { secretName: "mirror-secret", defaultMode: 0o440 });
        assert.deepEqual(c.volumeMounts.find((m: any) => m.name === creds.name), { name: creds.name, mountPath: env.CREDS_DIR, readOnly: true });
        assert.equal(pod.automountServiceAccountToken, false);
        assertRestricted(pod, assert);
        assert.deepEqual(c.resources, {
            requests: { cpu: "50m", memory: "64Mi", "ephemeral-storage": "16Mi" },
            limits: { cpu: "500m", memory: "512Mi", "ephemeral-storage": "64Mi" },
        });
        // Objects go bucket to bucket; the pod's disk holds only mc's config.
        assert.deepEqual(pod.volumes.filter((v: any) => v.emptyDir).map((v: any) => [v.name, v.emptyDir.sizeLimit]), [["tmp", "16Mi"]]);
        assert.deepEqual(ephemeralStorageFit(pod).problems, []);
    });

    it("copies new and changed objects, never removes from the copy, and checks the result itself", () => {
        const lines = MIRROR_SCRIPT.trim().split("\n");
        assert.equal(lines[0], "set -eu");
        const mirror = lines.find((l) => l.startsWith("mc mirror "))!;
        assert.equal(mirror, 'mc mirror --overwrite --quiet --summary "$src" "$dst"');
        assert.ok(lines.includes('dst="store/$BACKUP_BUCKET/$BACKUP_PREFIX/"'));
        assert.doesNotMatch(MIRROR_SCRIPT, /--remove|mc rm|--watch/, "a mistake in the source must never erase the backup");
        // mc mirror exits 0 on errors it only prints: the verdict is mc diff's, after it.
        const diff = lines.findIndex((l) => l.startsWith('mc diff "$src" "$dst"'));
        assert.ok(diff > lines.indexOf(mirror));
        assert.match(lines[diff], /grep -v '\^> '/, "only objects deleted from the source may differ");
        assert.equal(lines[lines.length - 1], 'echo "mirrored $ARTIFACT_BUCKET into $BACKUP_BUCKET/$BACKUP_PREFIX/"');
    });

    it("is a client of the object store only, and admits nothing", async () => {
        const cj = await build("ab-net");
        const podLabels = cj.spec.jobTemplate.spec.template.metadata.labels;
        assert.equal(podLabels["mlflow-platform.io/artifacts-client"], "true");
        assert.equal(podLabels["mlflow-platform.io/database-client"], undefined);
        assert.equal(podLabels["app.kubernetes.io/component"], "artifactBackup");
        const policy = only(T.NetworkPolicy, "ab-net-netpol").inputs;
        assertSelects(policy.spec.podSelector.matchLabels, podLabels, "policy must select the backup pods");
        assert.deepEqual(policy.spec.ingress, []);
        assert.deepEqual(policy.spec.egress.slice(1), [s3Egress]);
        const sa = only(T.ServiceAccount, "ab-net-sa").inputs;
        assert.equal(sa.automountServiceAccountToken, false);
        assert.equal(cj.spec.jobTemplate.spec.template.spec.serviceAccountName, sa.metadata.name);
    });
});
