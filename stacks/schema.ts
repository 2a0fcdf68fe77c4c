// Every key a stack file may set under `mlflow-platform:`, as one schema: the components' slices
// (components/*/schema.ts), composed as they are, plus the platform-wide keys and the secrets.
import { z } from "zod";
import { artifactBackupSchema } from "../components/artifactBackup/schema";
import { ingressSchema } from "../components/authIngress/schema";
import { databaseSchema } from "../components/database/schema";
import { backupSchema, RETIRED_BACKUP_KEYS } from "../components/databaseBackup/schema";
import { deployControllerSchema } from "../components/deployController/schema";
import { dnsLabel } from "../components/fields";
import { servingSchema } from "../components/modelServing/schema";
import { monitoringSchema } from "../components/monitoring/schema";
import { objectStoreSchema } from "../components/objectStore/schema";
import { trackingSchema } from "../components/trackingServer/schema";

/** Namespaces Kubernetes itself uses; the platform owns its namespace (and a destroy deletes it), so never one of these. */
export const SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"] as const;

const namespace = dnsLabel("a DNS label (a-z, 0-9, '-', ≤63 chars)").refine(
    (n) => !(SYSTEM_NAMESPACES as readonly string[]).includes(n) && !n.startsWith("kube-"),
    `must not be a Kubernetes system namespace (${SYSTEM_NAMESPACES.join(", ")}, kube-*): the platform owns its namespace`,
);

export const networkSchema = z
    .strictObject({
        ingressControllerNamespace: dnsLabel("a namespace name").default("ingress-nginx").describe("namespace of the ingress controller, admitted to the tracking server"),
        prometheusNamespace: dnsLabel("a namespace name").default("monitoring").describe("namespace of Prometheus, admitted to the metrics ports"),
    })
    .describe("who may reach the platform (NetworkPolicies; all else is denied)");

export const platformSchema = z.strictObject({
    development: z
        .boolean()
        .default(false)
        .describe("marks a development stack: the edge may then serve without TLS (other stacks need ingress.tls or ingress.allowPlaintext)"),
    namespace: namespace.default("mlflow").describe("namespace the platform creates and owns (Pod Security `restricted`)"),
    retainOnDestroy: z
        .boolean()
        .default(true)
        .describe(
            "`pulumi destroy` leaves the namespace, the PostgreSQL and MinIO StatefulSets (and so their PVCs) and the credential Secrets in the cluster (Pulumi's retainOnDelete); false for a throwaway stack",
        ),
    database: databaseSchema.prefault({}),
    objectStore: objectStoreSchema.prefault({}),
    tracking: trackingSchema.prefault({}),
    ingress: ingressSchema.prefault({}),
    network: networkSchema.prefault({}),
    backup: backupSchema.prefault({}),
    artifactBackup: artifactBackupSchema.prefault({}),
    monitoring: monitoringSchema.prefault({}),
    serving: servingSchema.prefault({}),
    deployController: deployControllerSchema.prefault({}),
});

/** Keys a stack file may still carry from an earlier release, by path (`backup.scratchSize`), with why each is gone. */
export const RETIRED_KEYS: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(RETIRED_BACKUP_KEYS).map(([k, why]) => [`backup.${k}`, why]));

export type ParsedConfig = z.infer<typeof platformSchema>;
export type SliceKey = keyof ParsedConfig;

/** Secret keys: top level, set with `pulumi config set --secret`, read with getSecret so they stay secret end to end. */
export const SECRETS = {
    databasePassword: "external database password (database.mode external); in-cluster it is generated",
    s3AccessKeyId: "read-write access key for MLflow (objectStore.mode s3)",
    s3SecretAccessKey: "its secret key (objectStore.mode s3)",
    s3ReadOnlyAccessKeyId: "read-only access key for serving (objectStore.mode s3); the read-write pair when unset",
    s3ReadOnlySecretAccessKey: "its secret key (objectStore.mode s3)",
} as const;
export type SecretKey = keyof typeof SECRETS;
export const SECRET_KEYS = Object.keys(SECRETS) as SecretKey[];
