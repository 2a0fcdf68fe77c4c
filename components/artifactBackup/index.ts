import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { CLIENT_OF, networkPolicy, scheduledJob, scheduledJobWatch, ScheduledJobWatch, scratch, selectorLabels, serviceAccount } from "../kube";
import { mcScriptContainer, ObjectStoreAccess } from "../objectStore";
import type { ArtifactBackupConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "artifactBackup";
const APP = "artifact-backup";
const CREDS_DIR = "/run/secrets/artifact-backup";
/** mc's config (the alias) under /tmp; the objects go from bucket to bucket, never through the pod's disk. */
const TMP_SIZE = "16Mi";
/** A mirror of a large bucket takes long; the next night's run starts where this one stopped. */
const RUN_DEADLINE_SECONDS = 6 * 3600;

export interface ArtifactBackupArgs {
    readonly namespace: pulumi.Input<string>;
    /** The object store's client image (`mc`), as the provisioning Job and the database backup use it. */
    readonly clientImage: string;
    /** As a user that reads `bucket` and writes `<backupBucket>/<prefix>/`. */
    readonly store: ObjectStoreAccess & {
        /** The artifact bucket to back up. */
        readonly bucket: pulumi.Input<string>;
        /** Where the copy goes: `<backupBucket>/<prefix>/`. */
        readonly backupBucket: pulumi.Input<string>;
        readonly prefix: string;
    };
    readonly config: ArtifactBackupConfig;
}

/**
 * A CronJob that mirrors the artifact bucket into `<backupBucket>/<prefix>/` with `mc mirror
 * --overwrite`: new and changed objects are copied, unchanged ones skipped, and nothing is ever removed
 * from the copy (no `--remove`), so an artifact deleted by mistake, or the whole bucket, stays in the
 * backup. The backup bucket is versioned, so an overwritten artifact keeps its earlier copy as a version.
 */
export class ArtifactBackup extends pulumi.ComponentResource {
    public readonly cronJob: k8s.batch.v1.CronJob;
    /** What the backup alerts watch (components/monitoring). */
    public readonly watch: ScheduledJobWatch;

    constructor(name: string, args: ArtifactBackupArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:ArtifactBackup`, name, {}, opts);
        const { store } = args;
        const child = { parent: this };
        const identity = { namespace: args.namespace, component: COMPONENT, app: APP, instance: name };
        const sa = serviceAccount(`${name}-sa`, identity, child);
        const tmp = scratch("tmp", "/tmp", TMP_SIZE);

        networkPolicy(`${name}-netpol`, { ...identity, ingress: [], egress: [store.clientEgress] }, child);

        const timing = { schedule: args.config.schedule, activeDeadlineSeconds: RUN_DEADLINE_SECONDS };
        this.cronJob = scheduledJob(
            `${name}-cronjob`,
            {
                ...identity,
                ...timing,
                clientLabels: { [CLIENT_OF.artifacts]: "true" },
                serviceAccountName: sa.metadata.name,
                containers: [
                    mcScriptContainer({
                        name: "mirror",
                        image: args.clientImage,
                        script: MIRROR_SCRIPT,
                        env: [
                            { name: "S3_ENDPOINT", value: store.endpoint },
                            { name: "ARTIFACT_BUCKET", value: store.bucket },
                            { name: "BACKUP_BUCKET", value: store.backupBucket },
                            { name: "BACKUP_PREFIX", value: store.prefix },
                            { name: "CREDS_DIR", value: CREDS_DIR },
                        ],
                        resources: {
                            requests: { cpu: "50m", memory: "64Mi", "ephemeral-storage": "16Mi" },
                            limits: { cpu: "500m", memory: "512Mi", "ephemeral-storage": "64Mi" },
                        },
                        volumeMounts: [{ name: "credentials", mountPath: CREDS_DIR, readOnly: true }, tmp.mount],
                    }),
                ],
                volumes: [{ name: "credentials", secret: { secretName: store.credentialsSecretName, defaultMode: 0o440 } }, tmp.volume],
            },
            child,
        );
        this.watch = scheduledJobWatch({ ...identity, ...timing });
        this.registerOutputs({ cronJob: this.cronJob, selector: selectorLabels(APP, name) });
    }
}

/**
 * Mirrors `$ARTIFACT_BUCKET` into `$BACKUP_BUCKET/$BACKUP_PREFIX/`: `--overwrite` copies an object
 * whose copy differs (size, or a newer source), and there is deliberately no `--remove`: a mistake in
 * the source (an artifact deleted, a bucket emptied) must never erase the backup.
 *
 * mc mirror's exit status cannot be trusted: it exits 0 when it could not list the target ("Unable to
 * list comparison", Access Denied) and when a bucket-to-bucket copy was refused, having copied nothing
 * (seen with mc 2025; tests/service/artifactBackup.minio.spec.ts runs it as a user without the rights).
 * So `mc diff` checks the result: every artifact must be in the copy with the same size and no newer
 * in the source (`>`, only in the copy, is an artifact deleted since: kept on purpose). Anything else,
 * or any error of mc diff, fails the run, naming up to 20 objects; the Job then retries. An artifact
 * written while the run lists can fail a check the retry then passes.
 */
export const MIRROR_SCRIPT = `set -eu
mc alias set store "$S3_ENDPOINT" "$(cat "$CREDS_DIR/AWS_ACCESS_KEY_ID")" "$(cat "$CREDS_DIR/AWS_SECRET_ACCESS_KEY")" >/dev/null
src="store/$ARTIFACT_BUCKET"
dst="store/$BACKUP_BUCKET/$BACKUP_PREFIX/"
mc mirror --overwrite --quiet --summary "$src" "$dst"
mc diff "$src" "$dst" 2>"$MC_CONFIG_DIR/diff.err" | { grep -v '^> ' || true; } | head -n 20 >"$MC_CONFIG_DIR/missing"
if [ -s "$MC_CONFIG_DIR/missing" ]; then
  echo "not in the backup after the mirror (< only in $ARTIFACT_BUCKET, ! differs from the copy):" >&2
  cat "$MC_CONFIG_DIR/missing" >&2
  exit 1
fi
if [ -s "$MC_CONFIG_DIR/diff.err" ]; then
  echo "could not compare $ARTIFACT_BUCKET with its copy:" >&2
  cat "$MC_CONFIG_DIR/diff.err" >&2
  exit 1
fi
echo "mirrored $ARTIFACT_BUCKET into $BACKUP_BUCKET/$BACKUP_PREFIX/"
`;
