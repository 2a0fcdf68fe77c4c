import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import {
    CLIENT_OF,
    containerSecurityContext,
    disruptionBudget,
    externalEgress,
    IMAGE_PULL_POLICY,
    JOB_TTL_SECONDS,
    labels,
    networkPolicy,
    podSecurityContext,
    renamedFrom,
    scratch,
    selectorLabels,
    serviceAccount,
    singleReplicaStatefulSet,
} from "../kube";
import type { ObjectStoreConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "objectStore";
const APP = "minio";
const PORT = 9000;
/** Access key names of the two least-privilege users (secret keys are generated). */
export const READ_WRITE_USER = "mlflow-tracking";
export const READ_ONLY_USER = "mlflow-serving";
export const BACKUP_USER = "mlflow-backup";
/** The artifact backup's user: reads the artifact bucket, writes `<backupBucket>/<ARTIFACT_BACKUP_PREFIX>/`, deletes nothing. */
export const ARTIFACT_BACKUP_USER = "mlflow-mirror";
/** Where in the backup bucket the artifact backup mirrors the artifact bucket (the dumps sit at its top). */
export const ARTIFACT_BACKUP_PREFIX = "artifacts";

export interface ObjectStoreArgs {
    readonly namespace: pulumi.Input<string>;
    readonly config: ObjectStoreConfig;
    /** `pulumi destroy` leaves the MinIO StatefulSet (so its PVC) and the credential Secrets in the cluster (retainOnDelete). */
    readonly retainOnDestroy: boolean;
    /** s3 mode: read-write credentials for MLflow, and optionally read-only ones for serving (Pulumi secrets). */
    readonly credentials?: {
        readonly accessKeyId?: pulumi.Input<string>;
        readonly secretAccessKey?: pulumi.Input<string>;
        /** Default to the read-write pair. */
        readonly readOnlyAccessKeyId?: pulumi.Input<string>;
        readonly readOnlySecretAccessKey?: pulumi.Input<string>;
    };
}

/** How a client pod reaches the object store: where, as whom (a Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), and the egress rule its NetworkPolicy needs. */
export interface ObjectStoreAccess {
    readonly endpoint: pulumi.Input<string>;
    readonly credentialsSecretName: pulumi.Input<string>;
    readonly clientEgress: pulumi.Input<k8s.types.input.networking.v1.NetworkPolicyEgressRule>;
}

export interface McScriptContainerArgs {
    name: string;
    /** The object store's client image (objectStore.clientImage). */
    image: string;
    script: string;
    env: pulumi.Input<k8s.types.input.core.v1.EnvVar>[];
    resources: k8s.types.input.core.v1.ResourceRequirements;
    /** Must include a writable /tmp: mc keeps its config (the aliases) in /tmp/.mc. */
    volumeMounts: pulumi.Input<k8s.types.input.core.v1.VolumeMount>[];
}

/** A restricted container of the client image running a POSIX shell script with `mc` (provisioning, the artifact backup). */
export function mcScriptContainer(args: McScriptContainerArgs): k8s.types.input.core.v1.Container {
    return {
        name: args.name,
        image: args.image,
        imagePullPolicy: IMAGE_PULL_POLICY,
        command: ["/bin/sh", "-c", args.script],
        env: [...args.env, { name: "MC_CONFIG_DIR", value: "/tmp/.mc" }],
        resources: args.resources,
        securityContext: containerSecurityContext(),
        volumeMounts: args.volumeMounts,
    };
}

/** S3 credentials as a Secret with the key names boto3 and KServe's storage initializer read. */
interface S3Credentials {
    accessKeyId: pulumi.Input<string>;
    secretAccessKey: pulumi.Input<string>;
}

/**
 * Artifact storage: an in-cluster MinIO StatefulSet whose provisioning Job creates a versioned,
 * private bucket and two least-privilege users (read-write for MLflow, read-only for serving), or an
 * external S3 endpoint. Exposes the endpoint and one Secret per user.
 */
export class ObjectStore extends pulumi.ComponentResource {
    public readonly endpoint: pulumi.Output<string>;
    public readonly bucket: pulumi.Output<string>;
    public readonly region: pulumi.Output<string>;
    /** Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the read-write user. */
    public readonly readWriteSecretName: pulumi.Output<string>;
    /** Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the read-only user. */
    public readonly readOnlySecretName: pulumi.Output<string>;
    /** The read-only user's keys, as Pulumi secrets: for a consumer that needs its own annotated Secret (KServe). */
    public readonly readOnlyCredentials: { accessKeyId: pulumi.Output<string>; secretAccessKey: pulumi.Output<string> };
    public readonly backupBucket: pulumi.Output<string>;
    /** Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the backup user (read-write on backupBucket only). */
    public readonly backupSecretName: pulumi.Output<string>;
    /** Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the artifact backup user (minio mode: ARTIFACT_BACKUP_USER; s3 mode: the read-write pair). */
    public readonly artifactBackupSecretName: pulumi.Output<string>;
    /** Prefix of backupBucket the artifact backup mirrors into (no slashes). */
    public readonly artifactBackupPrefix = ARTIFACT_BACKUP_PREFIX;
    /** Egress rule a client's NetworkPolicy needs to reach the object store. */
    public readonly clientEgress: pulumi.Output<k8s.types.input.networking.v1.NetworkPolicyEgressRule>;
    /** Resolves once the bucket and users exist (the provisioning Job completed). */
    public readonly ready: pulumi.Output<string>;
    public readonly statefulSet?: k8s.apps.v1.StatefulSet;
    public readonly provisioningJob?: k8s.batch.v1.Job;

    constructor(name: string, args: ObjectStoreArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:ObjectStore`, name, {}, renamedFrom(opts, "mlflow-platform:storage:ObjectStore"));
        const c = args.config;
        const creds = args.credentials ?? {};
        const child = { parent: this };
        // What holds or unlocks the data outlives a `pulumi destroy` unless the stack opts out.
        const kept = { parent: this, retainOnDelete: args.retainOnDestroy };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, APP, name) };
        const secretFor = (role: string, creds: S3Credentials) =>
            new k8s.core.v1.Secret(
                `${name}-${role}`,
                {
                    metadata: { ...meta, name: `${name}-artifacts-${role}` },
                    type: "Opaque",
                    stringData: { AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey },
                },
                kept,
            );
        const generated = (role: string, length: number) =>
            new random.RandomPassword(`${name}-${role}`, { length, special: false }, child).result;

        this.bucket = pulumi.output(c.bucket);
        this.backupBucket = pulumi.output(c.backupBucket);
        this.region = pulumi.output(c.region);

        if (c.mode === "s3") {
            const readWrite = secretFor("readwrite", { accessKeyId: creds.accessKeyId!, secretAccessKey: creds.secretAccessKey! });
            this.readOnlyCredentials = {
                accessKeyId: pulumi.secret(creds.readOnlyAccessKeyId ?? creds.accessKeyId!),
                secretAccessKey: pulumi.secret(creds.readOnlySecretAccessKey ?? creds.secretAccessKey!),
            };
            const readOnly = secretFor("readonly", this.readOnlyCredentials);
            this.endpoint = pulumi.output(c.endpoint!);
            this.clientEgress = pulumi.output(externalEgress(endpointPort(c.endpoint!)));
            this.readWriteSecretName = readWrite.metadata.name;
            this.readOnlySecretName = readOnly.metadata.name;
            // With an external S3, backups use the read-write credentials; the bucket must exist.
            const readWriteKeys = { accessKeyId: creds.accessKeyId!, secretAccessKey: creds.secretAccessKey! };
            this.backupSecretName = secretFor("backup", readWriteKeys).metadata.name;
            this.artifactBackupSecretName = secretFor("mirror", readWriteKeys).metadata.name;
            this.ready = this.bucket;
        } else {
            const rootUser = generated("root-user", 20);
            const rootPassword = generated("root-password", 40);
            const root = new k8s.core.v1.Secret(
                `${name}-root`,
                {
                    metadata: { ...meta, name: `${name}-artifacts-root` },
                    type: "Opaque",
                    stringData: {
                        // Read by the server through MINIO_CONFIG_ENV_FILE, so no credential sits in env.
                        "config.env": pulumi.interpolate`MINIO_ROOT_USER=${rootUser}\nMINIO_ROOT_PASSWORD=${rootPassword}\n`,
                        rootUser,
                        rootPassword,
                    },
                },
                kept,
            );
            const readWrite = secretFor("readwrite", { accessKeyId: READ_WRITE_USER, secretAccessKey: generated("readwrite-key", 40) });
            this.readOnlyCredentials = { accessKeyId: pulumi.secret(READ_ONLY_USER), secretAccessKey: pulumi.secret(generated("readonly-key", 40)) };
            const readOnly = secretFor("readonly", this.readOnlyCredentials);
            const backup = secretFor("backup", { accessKeyId: BACKUP_USER, secretAccessKey: generated("backup-key", 40) });
            const mirror = secretFor("mirror", { accessKeyId: ARTIFACT_BACKUP_USER, secretAccessKey: generated("mirror-key", 40) });
            const sa = serviceAccount(`${name}-sa`, { namespace: args.namespace, component: COMPONENT, app: APP, instance: name }, child);
            const service = new k8s.core.v1.Service(
                `${name}-svc`,
                {
                    metadata: { ...meta, name: `${name}-minio` },
                    spec: {
                        // Headless: it governs the StatefulSet (stable pod DNS) and resolves to the pod.
                        clusterIP: "None",
                        selector: selectorLabels(APP, name),
                        ports: [{ name: "s3", port: PORT, targetPort: "s3" }],
                    },
                },
                child,
            );
            this.statefulSet = this.minioStatefulSet(name, args, root, sa, service);
            disruptionBudget(`${name}-pdb`, { namespace: args.namespace, component: COMPONENT, app: APP, instance: name }, child);
            // Derived from the StatefulSet so that users of the endpoint wait until MinIO is ready.
            this.endpoint = pulumi.interpolate`http://${this.statefulSet.spec.serviceName}.${this.statefulSet.metadata.namespace}.svc:${PORT}`;
            this.clientEgress = pulumi.output({ to: [{ podSelector: { matchLabels: selectorLabels(APP, name) } }], ports: [{ protocol: "TCP", port: PORT }] });
            // Only artifact clients of this namespace (by label) get in.
            networkPolicy(
                `${name}-netpol`,
                {
                    namespace: args.namespace,
                    component: COMPONENT, app: APP,
                    instance: name,
                    ingress: [
                        {
                            from: [{ podSelector: { matchLabels: { [CLIENT_OF.artifacts]: "true" } } }],
                            ports: [{ protocol: "TCP", port: PORT }],
                        },
                    ],
                    egress: [],
                },
                child,
            );
            this.provisioningJob = this.provisioningJobFor(name, args, meta, root, { readwrite: readWrite, readonly: readOnly, backup, mirror }, sa);
            this.readWriteSecretName = readWrite.metadata.name;
            this.readOnlySecretName = readOnly.metadata.name;
            this.backupSecretName = backup.metadata.name;
            this.artifactBackupSecretName = mirror.metadata.name;
            this.ready = pulumi.all([this.provisioningJob.metadata.name, this.bucket]).apply(([, bucket]) => bucket);
        }

        this.registerOutputs({
            endpoint: this.endpoint,
            bucket: this.bucket,
            region: this.region,
            readWriteSecretName: this.readWriteSecretName,
            readOnlySecretName: this.readOnlySecretName,
            backupBucket: this.backupBucket,
            backupSecretName: this.backupSecretName,
            artifactBackupSecretName: this.artifactBackupSecretName,
            clientEgress: this.clientEgress,
            ready: this.ready,
        });
    }

    private minioStatefulSet(
        name: string,
        args: ObjectStoreArgs,
        root: k8s.core.v1.Secret,
        sa: k8s.core.v1.ServiceAccount,
        service: k8s.core.v1.Service,
    ): k8s.apps.v1.StatefulSet {
        const c = args.config;
        // MinIO keeps its data and its own temporary files on the PVC: /tmp (HOME) may use the whole limit.
        const tmp = scratch("tmp", "/tmp", c.resources.limits["ephemeral-storage"]);
        return singleReplicaStatefulSet(
            `${name}-statefulset`,
            {
                namespace: args.namespace,
                component: COMPONENT, app: APP,
                instance: name,
                serviceName: service.metadata.name,
                serviceAccountName: sa.metadata.name,
                terminationGracePeriodSeconds: 60,
                storageSize: c.storageSize,
                storageClass: c.storageClass,
                container: {
                    name: "minio",
                    image: c.image,
                    imagePullPolicy: IMAGE_PULL_POLICY,
                    args: ["server", "/data", "--address", `:${PORT}`],
                    env: [
                        { name: "MINIO_CONFIG_ENV_FILE", value: "/run/secrets/minio/config.env" },
                        // The web console is off: buckets and users are managed as code.
                        { name: "MINIO_BROWSER", value: "off" },
                        { name: "HOME", value: "/tmp" },
                    ],
                    ports: [{ name: "s3", containerPort: PORT, protocol: "TCP" }],
                    startupProbe: { httpGet: { path: "/minio/health/live", port: "s3" }, periodSeconds: 5, failureThreshold: 60 },
                    readinessProbe: { httpGet: { path: "/minio/health/ready", port: "s3" }, periodSeconds: 10, timeoutSeconds: 5 },
                    livenessProbe: { httpGet: { path: "/minio/health/live", port: "s3" }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 6 },
                    resources: c.resources,
                    securityContext: containerSecurityContext(),
                    volumeMounts: [{ name: "data", mountPath: "/data" }, { name: "root", mountPath: "/run/secrets/minio", readOnly: true }, tmp.mount],
                },
                volumes: [{ name: "root", secret: { secretName: root.metadata.name, defaultMode: 0o440 } }, tmp.volume],
            },
            { parent: this, retainOnDelete: args.retainOnDestroy },
        );
    }

    private provisioningJobFor(
        name: string,
        args: ObjectStoreArgs,
        meta: { namespace: pulumi.Input<string>; labels: Record<string, string> },
        root: k8s.core.v1.Secret,
        users: Record<Role, k8s.core.v1.Secret>,
        sa: k8s.core.v1.ServiceAccount,
    ): k8s.batch.v1.Job {
        const c = args.config;
        const policies = new k8s.core.v1.ConfigMap(
            `${name}-policies`,
            {
                metadata: { ...meta, name: `${name}-artifacts-policies` },
                data: Object.fromEntries(ROLES.map((role) => [`${role}.json`, JSON.stringify(rolePolicy(c, role), null, 2)])),
            },
            { parent: this },
        );
        const tmp = scratch("tmp", "/tmp", "64Mi");
        networkPolicy(
            `${name}-provision-netpol`,
            { namespace: args.namespace, component: COMPONENT, app: "minio-provisioning", instance: name, ingress: [], egress: [this.clientEgress] },
            { parent: this },
        );
        return new k8s.batch.v1.Job(
            `${name}-provision`,
            {
                metadata: { ...meta, labels: labels(COMPONENT, "minio-provisioning", name) },
                spec: {
                    // Retries cover MinIO still starting; the script is idempotent.
                    backoffLimit: 10,
                    // Garbage-collect the finished Job; a later `pulumi up --refresh` re-creates and re-runs it harmlessly.
                    ttlSecondsAfterFinished: JOB_TTL_SECONDS,
                    activeDeadlineSeconds: 900,
                    template: {
                        metadata: { labels: { ...labels(COMPONENT, "minio-provisioning", name), [CLIENT_OF.artifacts]: "true" } },
                        spec: {
                            restartPolicy: "OnFailure",
                            serviceAccountName: sa.metadata.name,
                            automountServiceAccountToken: false,
                            securityContext: podSecurityContext(),
                            containers: [
                                mcScriptContainer({
                                    name: "provision",
                                    image: c.clientImage,
                                    script: PROVISION_SCRIPT,
                                    env: [
                                        { name: "MINIO_ENDPOINT", value: this.endpoint },
                                        { name: "BUCKET", value: c.bucket },
                                        { name: "BACKUP_BUCKET", value: c.backupBucket },
                                        { name: "ROOT_DIR", value: "/run/secrets/root" },
                                        { name: "CREDS_DIR", value: "/run/secrets/users" },
                                        { name: "POLICY_DIR", value: "/etc/minio-policies" },
                                    ],
                                    resources: {
                                        requests: { cpu: "50m", memory: "64Mi", "ephemeral-storage": "16Mi" },
                                        limits: { cpu: "500m", memory: "256Mi", "ephemeral-storage": "64Mi" },
                                    },
                                    volumeMounts: [
                                        { name: "root", mountPath: "/run/secrets/root", readOnly: true },
                                        ...ROLES.map((role) => ({ name: role, mountPath: `/run/secrets/users/${role}`, readOnly: true })),
                                        { name: "policies", mountPath: "/etc/minio-policies", readOnly: true },
                                        tmp.mount,
                                    ],
                                }),
                            ],
                            volumes: [
                                { name: "root", secret: { secretName: root.metadata.name, defaultMode: 0o440 } },
                                ...ROLES.map((role) => ({ name: role, secret: { secretName: users[role].metadata.name, defaultMode: 0o440 } })),
                                { name: "policies", configMap: { name: policies.metadata.name } },
                                tmp.volume,
                            ],
                        },
                    },
                },
            },
            { parent: this, dependsOn: [this.statefulSet!] },
        );
    }
}

/** The MinIO users the provisioning Job creates; each has a Secret and a policy file of the same name. */
const ROLES = ["readwrite", "readonly", "backup", "mirror"] as const;
export type Role = (typeof ROLES)[number];

/** TCP port of an http(s) endpoint URL: the explicit one, else 443 or 80. */
export function endpointPort(endpoint: string): number {
    const url = new URL(endpoint);
    return url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
}

/**
 * Idempotent bucket and user provisioning with `mc`. It reads every credential from mounted files,
 * so nothing secret is in the pod spec, and it never grants anonymous access.
 */
export const PROVISION_SCRIPT = `set -eu
mc alias set platform "$MINIO_ENDPOINT" "$(cat "$ROOT_DIR/rootUser")" "$(cat "$ROOT_DIR/rootPassword")" >/dev/null
for bucket in "$BUCKET" "$BACKUP_BUCKET"; do
  mc mb --ignore-existing "platform/$bucket"
  mc version enable "platform/$bucket"
  mc anonymous set private "platform/$bucket"
done
for role in ${ROLES.join(" ")}; do
  mc admin policy create platform "$BUCKET-$role" "$POLICY_DIR/$role.json"
  user="$(cat "$CREDS_DIR/$role/AWS_ACCESS_KEY_ID")"
  mc admin user add platform "$user" "$(cat "$CREDS_DIR/$role/AWS_SECRET_ACCESS_KEY")"
  if ! mc admin policy attach platform "$BUCKET-$role" --user "$user" 2>"$MC_CONFIG_DIR/attach.err"; then
    grep -qi "already" "$MC_CONFIG_DIR/attach.err" || { cat "$MC_CONFIG_DIR/attach.err" >&2; exit 1; }
  fi
done
echo "buckets $BUCKET and $BACKUP_BUCKET ready: versioned, private, users provisioned"
`;

/** The policy the provisioning Job gives each role's user. */
export function rolePolicy(c: { bucket: string; backupBucket: string }, role: Role) {
    if (role === "mirror") return artifactBackupPolicy(c.bucket, c.backupBucket);
    if (role === "backup") {
        // The dumps' user may rewrite and prune dumps, but never the artifact copy beside them: a leaked
        // key of either backup user must not be able to erase the other's backup.
        const policy = bucketPolicy(c.backupBucket, role);
        return {
            ...policy,
            Statement: [
                ...policy.Statement,
                {
                    Effect: "Deny",
                    Action: ["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload"],
                    Resource: [`arn:aws:s3:::${c.backupBucket}/${ARTIFACT_BACKUP_PREFIX}/*`],
                },
            ],
        };
    }
    return bucketPolicy(c.bucket, role);
}

/**
 * IAM policy of one role on one bucket: read-write for MLflow, read-only for serving, and for the
 * backup user read-write plus version deletion on the backup bucket (to enforce retention).
 */
export function bucketPolicy(bucket: string, role: Exclude<Role, "mirror">) {
    const writes = role !== "readonly";
    const versions = role === "backup";
    const bucketActions = [
        "s3:GetBucketLocation",
        "s3:ListBucket",
        ...(writes ? ["s3:ListBucketMultipartUploads"] : []),
        ...(versions ? ["s3:ListBucketVersions"] : []),
    ];
    const objectActions = writes
        ? ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", ...(versions ? ["s3:DeleteObjectVersion"] : [])]
        : ["s3:GetObject"];
    return {
        Version: "2012-10-17",
        Statement: [
            { Effect: "Allow", Action: bucketActions, Resource: [`arn:aws:s3:::${bucket}`] },
            { Effect: "Allow", Action: objectActions, Resource: [`arn:aws:s3:::${bucket}/*`] },
        ],
    };
}

/**
 * IAM policy of the artifact backup user: read the artifact bucket, and read and write objects under
 * `<backupBucket>/<ARTIFACT_BACKUP_PREFIX>/` (mc mirror compares what is there, then copies). It may
 * delete nothing anywhere: with both buckets versioned, a leaked key can add versions to the backup but
 * cannot erase one, nor touch a dump.
 */
export function artifactBackupPolicy(bucket: string, backupBucket: string) {
    const prefix = `${ARTIFACT_BACKUP_PREFIX}/`;
    return {
        Version: "2012-10-17",
        Statement: [
            { Effect: "Allow", Action: ["s3:GetBucketLocation", "s3:ListBucket"], Resource: [`arn:aws:s3:::${bucket}`] },
            { Effect: "Allow", Action: ["s3:GetObject"], Resource: [`arn:aws:s3:::${bucket}/*`] },
            { Effect: "Allow", Action: ["s3:GetBucketLocation"], Resource: [`arn:aws:s3:::${backupBucket}`] },
            {
                Effect: "Allow",
                Action: ["s3:ListBucket"],
                Resource: [`arn:aws:s3:::${backupBucket}`],
                Condition: { StringLike: { "s3:prefix": [ARTIFACT_BACKUP_PREFIX, `${prefix}*`] } },
            },
            {
                Effect: "Allow",
                Action: ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                Resource: [`arn:aws:s3:::${backupBucket}/${prefix}*`],
            },
        ],
    };
}
