import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import {
    CLIENT_OF,
    containerSecurityContext,
    IMAGE_PULL_POLICY,
    networkPolicy,
    renamedFrom,
    scheduledJob,
    scheduledJobWatch,
    ScheduledJobWatch,
    scratch,
    secretEnvEntrypoint,
    selectorLabels,
    serviceAccount,
} from "../kube";
import { DatabaseConnection, libpqEnv } from "../database";
import type { ObjectStoreAccess } from "../objectStore";
import type { BackupConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "databaseBackup";
const APP = "database-backup";
const SECRET_ENV_DIR = "/run/secrets/backup-env";
const STORE_CREDS_DIR = "/run/secrets/backup-store";
/** Where the init container puts the object store client's `mc` binary for the dump container. */
const TOOLS_DIR = "/opt/backup-tools";
/** Space of the emptyDirs: the `mc` binary (about 30-45 MB) and mc's config under /tmp. Nothing spools the dump. */
const TOOLS_SIZE = "96Mi";
const TMP_SIZE = "16Mi";
/** A dump that takes longer is stopped (and retried by the next night's run). */
const RUN_DEADLINE_SECONDS = 3600;

export interface DatabaseBackupArgs {
    readonly namespace: pulumi.Input<string>;
    /** The database to dump (host, user, password Secret, egress rule). */
    readonly database: DatabaseConnection;
    /** Image with `pg_dump` of the server's major version or newer, and bash (the platform's postgres image). */
    readonly dumpImage: string;
    /** The object store's client image: its `mc` binary is copied into the pod to stream and prune dumps. */
    readonly uploadImage: string;
    /** Where dumps go (the backup bucket), as the backup user. */
    readonly store: ObjectStoreAccess & { readonly bucket: pulumi.Input<string> };
    readonly config: BackupConfig;
}

/**
 * A CronJob that streams `pg_dump --format=custom` of the MLflow database into the backup bucket
 * (`mc pipe`, no local spool: the pod's disk use does not grow with the database), moves the object to
 * its final name only once it is a complete dump, and keeps the newest `retain` dumps. Never two at
 * once (Forbid), a start deadline, and a run deadline, so a stuck dump cannot pile up.
 */
export class DatabaseBackup extends pulumi.ComponentResource {
    public readonly cronJob: k8s.batch.v1.CronJob;
    /** What the backup alerts watch (components/monitoring). */
    public readonly watch: ScheduledJobWatch;

    constructor(name: string, args: DatabaseBackupArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:DatabaseBackup`, name, {}, renamedFrom(opts, "mlflow-platform:db:DatabaseBackup"));
        const c = args.config;
        const child = { parent: this };
        const identity = { namespace: args.namespace, component: COMPONENT, app: APP, instance: name };
        const sa = serviceAccount(`${name}-sa`, identity, child);
        const steps = dumpSteps({ ...args, retain: c.retain });

        networkPolicy(`${name}-netpol`, { ...identity, ingress: [], egress: [args.database.clientEgress, args.store.clientEgress] }, child);

        const timing = { schedule: c.schedule, activeDeadlineSeconds: RUN_DEADLINE_SECONDS };
        this.cronJob = scheduledJob(
            `${name}-cronjob`,
            {
                ...identity,
                ...timing,
                clientLabels: DUMP_CLIENT_LABELS,
                serviceAccountName: sa.metadata.name,
                initContainers: [steps.installMc],
                containers: [steps.dump],
                volumes: steps.volumes,
            },
            child,
        );
        this.watch = scheduledJobWatch({ ...identity, ...timing });
        this.registerOutputs({ cronJob: this.cronJob, selector: selectorLabels(APP, name) });
    }
}

/** The pod labels a dump needs: the database's and the object store's NetworkPolicies admit them. */
export const DUMP_CLIENT_LABELS = { [CLIENT_OF.database]: "true", [CLIENT_OF.artifacts]: "true" };

export interface DumpStepsArgs extends Pick<DatabaseBackupArgs, "database" | "dumpImage" | "uploadImage" | "store"> {
    /** How many dumps under `prefix` are kept. */
    readonly retain: number;
    /** Where in the backup bucket the dumps go: "" (the nightly ones) or e.g. "pre-upgrade/". */
    readonly prefix?: string;
    /** A shell test the dump container runs first; when it fails, the container exits 0 without a dump. */
    readonly onlyIf?: { readonly test: string; readonly skipped: string; readonly mounts: k8s.types.input.core.v1.VolumeMount[]; readonly env: k8s.types.input.core.v1.EnvVar[] };
}

/**
 * The two containers of a dump into the backup bucket, for any pod: `install-mc` (the client image's
 * `mc` copied into an emptyDir; run it first, as an init container) and `dump` (pg_dump piped into `mc`
 * by BACKUP_SCRIPT), with the volumes they mount. The nightly CronJob runs them; so does the tracking
 * server's migration Job before an upgrade.
 */
export function dumpSteps(args: DumpStepsArgs) {
    const tools = scratch("dump-tools", TOOLS_DIR, TOOLS_SIZE);
    const tmp = scratch("dump-tmp", "/tmp", TMP_SIZE);
    const installMc = {
        name: "install-mc",
        image: args.uploadImage,
        imagePullPolicy: IMAGE_PULL_POLICY,
        command: ["/bin/sh", "-c", INSTALL_MC_SCRIPT],
        env: [{ name: "TOOLS_DIR", value: TOOLS_DIR }],
        resources: {
            requests: { cpu: "50m", memory: "32Mi", "ephemeral-storage": "16Mi" },
            limits: { cpu: "200m", memory: "64Mi", "ephemeral-storage": "32Mi" },
        },
        securityContext: containerSecurityContext(),
        volumeMounts: [tools.mount],
    };
    // The client image's mc joins the postgres image's pg_dump, so one process pipes into the other.
    const dump = {
        name: "dump",
        image: args.dumpImage,
        imagePullPolicy: IMAGE_PULL_POLICY,
        command: secretEnvEntrypoint(SECRET_ENV_DIR),
        args: ["bash", "-c", dumpScript(args.onlyIf)],
        env: pulumi.all([libpqEnv(args.database), args.store.endpoint, args.store.bucket]).apply(([pg, endpoint, bucket]) => [
            ...pg,
            { name: "MC", value: `${TOOLS_DIR}/mc` },
            { name: "S3_ENDPOINT", value: endpoint },
            { name: "BACKUP_BUCKET", value: bucket },
            { name: "DUMP_PREFIX", value: args.prefix ?? "" },
            { name: "RETAIN", value: String(args.retain) },
            { name: "CREDS_DIR", value: STORE_CREDS_DIR },
            { name: "MC_CONFIG_DIR", value: "/tmp/.mc" },
            ...(args.onlyIf?.env ?? []),
        ]),
        resources: {
            requests: { cpu: "100m", memory: "256Mi", "ephemeral-storage": "64Mi" },
            limits: { cpu: "1", memory: "1Gi", "ephemeral-storage": "256Mi" },
        },
        securityContext: containerSecurityContext(),
        volumeMounts: [
            { name: "dump-db-secret", mountPath: SECRET_ENV_DIR, readOnly: true },
            { name: "dump-store-secret", mountPath: STORE_CREDS_DIR, readOnly: true },
            { ...tools.mount, readOnly: true },
            tmp.mount,
            ...(args.onlyIf?.mounts ?? []),
        ],
    };
    const volumes = [
        { name: "dump-db-secret", secret: { secretName: args.database.passwordSecretName, defaultMode: 0o440, items: [{ key: "password", path: "PGPASSWORD" }] } },
        { name: "dump-store-secret", secret: { secretName: args.store.credentialsSecretName, defaultMode: 0o440 } },
        tools.volume,
        tmp.volume,
    ];
    return { installMc, dump, volumes };
}

/** BACKUP_SCRIPT, behind the shell test of `onlyIf` when given (exit 0 without a dump when it fails). */
export function dumpScript(onlyIf?: Pick<NonNullable<DumpStepsArgs["onlyIf"]>, "test" | "skipped">): string {
    return onlyIf ? `if ! ${onlyIf.test}; then echo ${JSON.stringify(onlyIf.skipped)}; exit 0; fi\n${BACKUP_SCRIPT}` : BACKUP_SCRIPT;
}

/** Copies the client image's `mc` (wherever its PATH has it) into the emptyDir the dump container mounts. */
export const INSTALL_MC_SCRIPT = `set -eu
cp "$(command -v mc)" "$TOOLS_DIR/mc"
chmod 0555 "$TOOLS_DIR/mc"
`;

/** Size of each part `mc pipe` holds in memory (its default is 528 MiB); 10,000 parts allow a 640 GiB dump. */
export const PIPE_PART_SIZE = "64MiB";

/**
 * Streams the dump into `incoming/<name>` of the backup bucket, checks that the object is a complete
 * custom-format dump (pg_dump and the upload both succeeded, pipefail; the object starts with the
 * `PGDMP` magic), and only then moves it to `<name>`: a failed or empty dump never replaces or joins
 * the good ones. Every version of the incoming object is removed on exit either way (the bucket is
 * versioned), and leftovers of a run that was killed are removed first. Then all but the newest $RETAIN
 * dumps are deleted, every version of them; names sort by time, so `sort -r` lists the newest first.
 */
export const BACKUP_SCRIPT = `set -euo pipefail
"$MC" alias set store "$S3_ENDPOINT" "$(cat "$CREDS_DIR/AWS_ACCESS_KEY_ID")" "$(cat "$CREDS_DIR/AWS_SECRET_ACCESS_KEY")" >/dev/null
dir="store/$BACKUP_BUCKET/\${DUMP_PREFIX:-}"
"$MC" rm --quiet --recursive --versions --force "$dir"incoming/ >/dev/null 2>&1 || true
"$MC" rm --quiet --incomplete --recursive --force "$dir"incoming/ >/dev/null 2>&1 || true
name="mlflow-$(date -u +%Y%m%dT%H%M%SZ).dump"
incoming="$dir"incoming/"$name"
trap '"$MC" rm --quiet --versions --force "$incoming" >/dev/null 2>&1 || true' EXIT
pg_dump --format=custom --no-owner | "$MC" pipe --quiet --part-size ${PIPE_PART_SIZE} "$incoming"
magic="$("$MC" cat "$incoming" 2>/dev/null | head -c 5 || true)"
if [ "$magic" != "PGDMP" ]; then
  echo "the uploaded dump $name does not start with PGDMP: not a custom-format dump, refused" >&2
  exit 1
fi
"$MC" mv --quiet "$incoming" "$dir$name"
"$MC" ls "$dir" | awk '{print $NF}' | { grep -E '^mlflow-[0-9TZ]+\\.dump$' || true; } | sort -r | tail -n +$((RETAIN + 1)) |
  while read -r old; do "$MC" rm --quiet --versions --force "$dir$old"; done
echo "uploaded \${DUMP_PREFIX:-}$name to $BACKUP_BUCKET; kept the newest $RETAIN"
`;
