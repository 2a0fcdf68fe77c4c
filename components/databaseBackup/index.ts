import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import {
    CLIENT_OF,
    containerSecurityContext,
    IMAGE_PULL_POLICY,
    labels,
    networkPolicy,
    podSecurityContext,
    renamedFrom,
    scratch,
    secretEnvEntrypoint,
    selectorLabels,
    serviceAccount,
} from "../kube";
import { DatabaseConnection, libpqEnv } from "../database";
import type { BackupConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "databaseBackup";
const APP = "database-backup";
const SECRET_ENV_DIR = "/run/secrets/backup-env";
const DUMP_DIR = "/backup";

type NetworkPolicyEgressRule = k8s.types.input.networking.v1.NetworkPolicyEgressRule;

export interface DatabaseBackupArgs {
    readonly namespace: pulumi.Input<string>;
    /** The database to dump (host, user, password Secret, egress rule). */
    readonly database: DatabaseConnection;
    /** Image with `pg_dump` of the server's major version or newer (the platform's postgres image). */
    readonly dumpImage: string;
    /** Image with `mc`, to upload and prune dumps. */
    readonly uploadImage: string;
    /** Where dumps go: S3 endpoint, bucket, and a Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. */
    readonly store: {
        readonly endpoint: pulumi.Input<string>;
        readonly bucket: pulumi.Input<string>;
        readonly credentialsSecretName: pulumi.Input<string>;
        readonly clientEgress: pulumi.Input<NetworkPolicyEgressRule>;
    };
    readonly config: BackupConfig;
}

/**
 * A CronJob that dumps the MLflow database with `pg_dump --format=custom` and uploads it to the
 * backup bucket, keeping the newest `retain` dumps. Never two at once (Forbid), a start deadline, and
 * a run deadline, so a stuck dump cannot pile up.
 */
export class DatabaseBackup extends pulumi.ComponentResource {
    public readonly cronJob: k8s.batch.v1.CronJob;

    constructor(name: string, args: DatabaseBackupArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:DatabaseBackup`, name, {}, renamedFrom(opts, "mlflow-platform:db:DatabaseBackup"));
        const c = args.config;
        const child = { parent: this };
        const identity = { namespace: args.namespace, component: COMPONENT, app: APP, instance: name };
        const podLabels = { ...labels(COMPONENT, APP, name), [CLIENT_OF.database]: "true", [CLIENT_OF.artifacts]: "true" };
        const sa = serviceAccount(`${name}-sa`, identity, child);
        const dump = scratch("dump", DUMP_DIR, c.scratchSize);
        const tmp = scratch("tmp", "/tmp", "64Mi");
        const pgEnv = libpqEnv(args.database);
        const resources = {
            requests: { cpu: "100m", memory: "256Mi", "ephemeral-storage": "64Mi" },
            limits: { cpu: "1", memory: "1Gi", "ephemeral-storage": "256Mi" },
        };

        networkPolicy(`${name}-netpol`, { ...identity, ingress: [], egress: [args.database.clientEgress, args.store.clientEgress] }, child);

        this.cronJob = new k8s.batch.v1.CronJob(
            `${name}-cronjob`,
            {
                metadata: { namespace: args.namespace, labels: labels(COMPONENT, APP, name), name: `${name}-database-backup` },
                spec: {
                    schedule: c.schedule,
                    timeZone: "Etc/UTC",
                    concurrencyPolicy: "Forbid",
                    startingDeadlineSeconds: 600,
                    successfulJobsHistoryLimit: 3,
                    failedJobsHistoryLimit: 3,
                    jobTemplate: {
                        metadata: { labels: labels(COMPONENT, APP, name) },
                        spec: {
                            backoffLimit: 2,
                            activeDeadlineSeconds: 3600,
                            template: {
                                metadata: { labels: podLabels },
                                spec: {
                                    restartPolicy: "OnFailure",
                                    serviceAccountName: sa.metadata.name,
                                    automountServiceAccountToken: false,
                                    securityContext: podSecurityContext(),
                                    // The dump runs first, into a scratch volume; the upload runs only if it succeeded.
                                    initContainers: [
                                        {
                                            name: "dump",
                                            image: args.dumpImage,
                                            imagePullPolicy: IMAGE_PULL_POLICY,
                                            command: secretEnvEntrypoint(SECRET_ENV_DIR),
                                            args: ["pg_dump", "--format=custom", "--no-owner", `--file=${DUMP_DIR}/mlflow.dump`],
                                            env: pgEnv,
                                            resources,
                                            securityContext: containerSecurityContext(),
                                            volumeMounts: [{ name: "db-secret", mountPath: SECRET_ENV_DIR, readOnly: true }, dump.mount, tmp.mount],
                                        },
                                    ],
                                    containers: [
                                        {
                                            name: "upload",
                                            image: args.uploadImage,
                                            imagePullPolicy: IMAGE_PULL_POLICY,
                                            command: ["/bin/sh", "-c", UPLOAD_SCRIPT],
                                            env: [
                                                { name: "S3_ENDPOINT", value: args.store.endpoint },
                                                { name: "BACKUP_BUCKET", value: args.store.bucket },
                                                { name: "RETAIN", value: String(c.retain) },
                                                { name: "DUMP", value: `${DUMP_DIR}/mlflow.dump` },
                                                { name: "CREDS_DIR", value: "/run/secrets/backup-store" },
                                                { name: "MC_CONFIG_DIR", value: "/tmp/.mc" },
                                            ],
                                            resources,
                                            securityContext: containerSecurityContext(),
                                            volumeMounts: [{ name: "store-secret", mountPath: "/run/secrets/backup-store", readOnly: true }, dump.mount, tmp.mount],
                                        },
                                    ],
                                    volumes: [
                                        {
                                            name: "db-secret",
                                            secret: { secretName: args.database.passwordSecretName, defaultMode: 0o440, items: [{ key: "password", path: "PGPASSWORD" }] },
                                        },
                                        { name: "store-secret", secret: { secretName: args.store.credentialsSecretName, defaultMode: 0o440 } },
                                        dump.volume,
                                        tmp.volume,
                                    ],
                                },
                            },
                        },
                    },
                },
            },
            child,
        );
        this.registerOutputs({ cronJob: this.cronJob, selector: selectorLabels(APP, name) });
    }
}

/**
 * Uploads the dump under a UTC timestamp, then deletes all but the newest $RETAIN dumps, every
 * version of them (the bucket is versioned). Object names sort by time, so `sort -r` lists the newest first.
 */
export const UPLOAD_SCRIPT = `set -eu
test -s "$DUMP" || { echo "dump file $DUMP is missing or empty" >&2; exit 1; }
mc alias set store "$S3_ENDPOINT" "$(cat "$CREDS_DIR/AWS_ACCESS_KEY_ID")" "$(cat "$CREDS_DIR/AWS_SECRET_ACCESS_KEY")" >/dev/null
name="mlflow-$(date -u +%Y%m%dT%H%M%SZ).dump"
mc cp --quiet "$DUMP" "store/$BACKUP_BUCKET/$name"
mc ls "store/$BACKUP_BUCKET/" | awk '{print $NF}' | grep -E '^mlflow-[0-9TZ]+\\.dump$' | sort -r | tail -n +$((RETAIN + 1)) |
  while read -r old; do mc rm --quiet --versions --force "store/$BACKUP_BUCKET/$old"; done
echo "uploaded $name to $BACKUP_BUCKET; kept the newest $RETAIN"
`;
