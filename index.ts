// Entry point: reads the stack configuration and wires the platform's components together.
// The only module that creates resources when imported.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { AuthIngress } from "./components/authIngress";
import { Database } from "./components/database";
import { DeployController, webhookEgressRule } from "./components/deployController";
import { DatabaseBackup } from "./components/databaseBackup";
import { defaultDenyPolicy, labels } from "./components/kube";
import { ModelImage } from "./components/modelImage";
import { ModelServing } from "./components/modelServing";
import { Monitoring } from "./components/monitoring";
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
    { namespace: ns, config: cfg.database, password: cfg.secrets.databasePassword },
    platform,
);

const objectStore = new ObjectStore(
    "mlflow",
    {
        namespace: ns,
        config: cfg.objectStore,
        credentials: {
            accessKeyId: cfg.secrets.s3AccessKeyId,
            secretAccessKey: cfg.secrets.s3SecretAccessKey,
            readOnlyAccessKeyId: cfg.secrets.s3ReadOnlyAccessKeyId,
            readOnlySecretAccessKey: cfg.secrets.s3ReadOnlySecretAccessKey,
        },
    },
    platform,
);

// Namespaces whose pods call the servers: the ingress controller's and Prometheus's.
const clientNamespaces = [cfg.network.ingressControllerNamespace, cfg.network.prometheusNamespace];

const tracking = new TrackingServer(
    "mlflow",
    {
        namespace: ns,
        config: cfg.tracking,
        publicHost: cfg.ingress.host,
        database,
        artifacts: {
            endpoint: objectStore.endpoint,
            bucket: objectStore.ready,
            region: objectStore.region,
            readWriteSecretName: objectStore.readWriteSecretName,
            clientEgress: objectStore.clientEgress,
        },
        clientNamespaces,
        webhooks: cfg.deployController.enabled && cfg.deployController.webhooks ? { receiverEgress: webhookEgressRule("mlflow") } : undefined,
    },
    platform,
);

const ingress = new AuthIngress(
    "mlflow",
    {
        namespace: ns,
        config: cfg.ingress,
        backend: { serviceName: tracking.serviceName, servicePort: tracking.servicePort },
        controllerNamespace: cfg.network.ingressControllerNamespace,
    },
    platform,
);

// Alias lookups and image builds reach the registry the way a data scientist does: through the
// ingress, as its first user.
const registryUser = cfg.ingress.users[0];
const registryPassword = ingress.passwords.apply((p) => p[registryUser]);
const serving = cfg.serving.enabled
    ? new ModelServing(
          "mlflow",
          {
              namespace: ns,
              objectStore: {
                  endpoint: objectStore.endpoint,
                  bucket: objectStore.ready,
                  region: objectStore.region,
                  // KServe reads the s3-* annotations from the Secret itself: ModelServing writes its own, annotated.
                  accessKeyId: objectStore.readOnlyCredentials.accessKeyId,
                  secretAccessKey: objectStore.readOnlyCredentials.secretAccessKey,
              },
              models: cfg.serving.models.map((m) => ({
                  ...m,
                  // The controller owns storageUri after creation; in image mode nothing is followed here.
                  followedByController: cfg.deployController.enabled && !cfg.serving.imageRegistry,
                  image: cfg.serving.imageRegistry
                      ? new ModelImage(
                            `mlflow-${m.name}`,
                            {
                                registeredModel: m.registeredModel,
                                alias: m.alias,
                                trackingUri: ingress.url,
                                username: registryUser,
                                password: registryPassword,
                                registry: cfg.serving.imageRegistry,
                            },
                            platform,
                        ).imageRef
                      : undefined,
              })),
              registry: cfg.serving.resolveAliases ? { trackingUri: ingress.url, username: registryUser, password: registryPassword } : undefined,
              runtimeScope: cfg.serving.runtimeScope,
              runtimeImage: cfg.serving.runtimeImage,
              installKServe: cfg.serving.installKServe,
              network: {
                  clientNamespaces,
                  artifactsEgress: objectStore.clientEgress,
              },
          },
          platform,
      )
    : undefined;

if (serving && cfg.deployController.enabled) {
    new DeployController(
        "mlflow",
        {
            namespace: ns,
            models: cfg.serving.models.map((m) => ({
                name: m.name,
                registeredModel: m.registeredModel,
                alias: m.alias,
                template: serving.controllerTemplate(m),
            })),
            tracking: { uri: tracking.trackingUri, selectorLabels: tracking.selectorLabels },
            artifactsDestination: pulumi.interpolate`s3://${objectStore.ready}`,
            pollIntervalSeconds: cfg.deployController.pollIntervalSeconds,
            webhook: cfg.deployController.webhooks,
            registerWebhook: cfg.deployController.webhooks,
            prometheusNamespace: cfg.network.prometheusNamespace,
            prometheusRelease: cfg.monitoring.prometheusRelease,
            scrapeInterval: cfg.monitoring.scrapeInterval,
            serviceMonitor: cfg.monitoring.enabled,
        },
        platform,
    );
}

if (cfg.monitoring.enabled) {
    new Monitoring(
        "mlflow",
        {
            namespace: ns,
            config: cfg.monitoring,
            tracking: { serviceName: tracking.serviceName, selectorLabels: tracking.selectorLabels },
            postgresStatefulSet: database.statefulSet?.metadata.name,
            volumeStatefulSets: [database.statefulSet, objectStore.statefulSet].flatMap((s) => (s ? [s.metadata.name] : [])),
            stackNamespace: cfg.network.prometheusNamespace,
        },
        platform,
    );
}

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
                // The bucket name once provisioning has made it.
                bucket: pulumi.all([objectStore.ready, objectStore.backupBucket]).apply(([, bucket]) => bucket),
                credentialsSecretName: objectStore.backupSecretName,
                clientEgress: objectStore.clientEgress,
            },
            config: cfg.backup,
        },
        platform,
    );
}

export const namespaceName = ns;
/** In-cluster v2 inference URLs and what each model serves (version, storageUri or image). */
export const modelEndpoints = serving?.endpoints;
export const servedModels = serving?.models;
export const trackingUri = tracking.trackingUri;
export const artifactBucket = objectStore.bucket;
export const backupBucket = objectStore.backupBucket;
export const artifactEndpoint = objectStore.endpoint;
export const databaseHost = database.host;
/** Where data scientists point MLFLOW_TRACKING_URI, and who may log in. */
export const trackingUrl = ingress.url;
export const ingressUsers = ingress.users;
/** Only ever a Pulumi secret: `pulumi stack output --show-secrets ingressPasswords`. */
export const ingressPasswords = ingress.passwords;
/** Secrets a user or another workload needs, by name (their values never leave the cluster). */
export const secretNames = {
    database: database.passwordSecretName,
    artifactsReadWrite: objectStore.readWriteSecretName,
    artifactsReadOnly: objectStore.readOnlySecretName,
    backups: objectStore.backupSecretName,
    ingressHtpasswd: ingress.htpasswdSecretName,
    ingressCredentials: ingress.credentialsSecretName,
};
/** Only ever a Pulumi secret: `pulumi stack output --show-secrets databasePassword`. */
export const databasePassword = pulumi.secret(database.password);
