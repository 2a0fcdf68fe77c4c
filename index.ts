// Entry point: reads the stack configuration and wires the platform's components together.
// The only module that creates resources when imported.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { Database } from "./components/database";
import { DatabaseBackup } from "./components/databaseBackup";
import { defaultDenyPolicy, labels } from "./components/kube";
import { ObjectStore } from "./components/objectStore";
import { TrackingServer } from "./components/trackingServer";
import { loadConfig } from "./stacks/config";

const cfg = loadConfig();
const provider = new k8s.Provider("k8s", {});
const platform = { providers: [provider] };

const namespace = new k8s.core.v1.Namespace(
    "namespace",
    {
        metadata: {
            name: cfg.namespace,
            labels: {
                ...labels("namespace", cfg.namespace),
                // Every pod of the platform meets the `restricted` Pod Security profile; enforce it.
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
    },
    { provider },
);
const ns = namespace.metadata.name;
// Nothing talks to or from the namespace's pods unless a component's own policy allows it.
defaultDenyPolicy("default-deny", ns, { provider });

const database = new Database(
    "mlflow",
    { namespace: ns, ...cfg.database, password: cfg.secrets.databasePassword },
    platform,
);

const objectStore = new ObjectStore(
    "mlflow",
    {
        namespace: ns,
        ...cfg.objectStore,
        accessKeyId: cfg.secrets.s3AccessKeyId,
        secretAccessKey: cfg.secrets.s3SecretAccessKey,
        readOnlyAccessKeyId: cfg.secrets.s3ReadOnlyAccessKeyId,
        readOnlySecretAccessKey: cfg.secrets.s3ReadOnlySecretAccessKey,
    },
    platform,
);

const tracking = new TrackingServer(
    "mlflow",
    {
        namespace: ns,
        ...cfg.tracking,
        publicHosts: [cfg.ingress.host, ...cfg.tracking.extraAllowedHosts],
        database,
        artifacts: {
            endpoint: objectStore.endpoint,
            bucket: objectStore.ready,
            region: objectStore.region,
            readWriteSecretName: objectStore.readWriteSecretName,
            clientEgress: objectStore.clientEgress,
        },
        clientNamespaces: [cfg.network.ingressControllerNamespace, cfg.network.prometheusNamespace],
    },
    platform,
);

if (cfg.backup.enabled) {
    new DatabaseBackup(
        "mlflow",
        {
            namespace: ns,
            database,
            dumpImage: cfg.database.image,
            uploadImage: cfg.objectStore.clientImage,
            store: {
                endpoint: objectStore.endpoint,
                bucket: objectStore.ready.apply(() => cfg.objectStore.backupBucket),
                credentialsSecretName: objectStore.backupSecretName,
                clientEgress: objectStore.clientEgress,
            },
            schedule: cfg.backup.schedule,
            retain: cfg.backup.retain,
            scratchSize: cfg.backup.scratchSize,
        },
        platform,
    );
}

export const namespaceName = ns;
export const trackingUri = tracking.trackingUri;
export const artifactBucket = objectStore.bucket;
export const backupBucket = objectStore.backupBucket;
export const artifactEndpoint = objectStore.endpoint;
export const databaseHost = database.host;
/** Secrets a user or another workload needs, by name (their values never leave the cluster). */
export const secretNames = {
    database: database.passwordSecretName,
    artifactsReadWrite: objectStore.readWriteSecretName,
    artifactsReadOnly: objectStore.readOnlySecretName,
    backups: objectStore.backupSecretName,
};
/** Only ever a Pulumi secret: `pulumi stack output --show-secrets databasePassword`. */
export const databasePassword = pulumi.secret(database.password);
