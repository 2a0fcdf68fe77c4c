// Entry point: the platform as its architecture diagram. Reads the stack configuration (stacks/) and
// wires the components (components/), each given its config slice as it is and the outputs of the
// components it talks to. The only module that creates resources when imported.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ArtifactBackup } from "./components/artifactBackup";
import { AuthIngress, edgeUrl } from "./components/authIngress";
import { Database } from "./components/database";
import { DatabaseBackup } from "./components/databaseBackup";
import { DeployController, webhookEgressRule } from "./components/deployController";
import { defaultDenyPolicy, labels } from "./components/kube";
import { ModelImage } from "./components/modelImage";
import { ModelServing, predictorService, v2ModelPath } from "./components/modelServing";
import { Monitoring } from "./components/monitoring";
import { ObjectStore } from "./components/objectStore";
import { TrackingServer } from "./components/trackingServer";
import { loadConfig } from "./stacks/config";

const cfg = loadConfig();
/** Every component's instance name: it prefixes the names of their Kubernetes objects. */
const instance = "mlflow";
const provider = new k8s.Provider("k8s", {});
const platform = { providers: [provider] };

const namespace = new k8s.core.v1.Namespace(
    "namespace",
    {
        metadata: {
            name: cfg.namespace,
            labels: {
                ...labels("platform", "namespace", cfg.namespace),
                // Every pod of the platform meets the `restricted` Pod Security profile; enforce it.
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
    },
    // `pulumi destroy` would delete the namespace and with it every PVC: kept unless the stack opts out.
    { provider, retainOnDelete: cfg.retainOnDestroy },
);
const ns = namespace.metadata.name;
// Nothing talks to or from the namespace's pods unless a component's own policy allows it.
defaultDenyPolicy("default-deny", ns, { provider });
// Namespaces whose pods call the servers: the ingress controller's and Prometheus's.
const clientNamespaces = [cfg.network.ingressControllerNamespace, cfg.network.prometheusNamespace];

// Metadata and artifacts.
const database = new Database(instance, { namespace: ns, config: cfg.database, password: cfg.secrets.databasePassword, retainOnDestroy: cfg.retainOnDestroy }, platform);
const objectStore = new ObjectStore(
    instance,
    {
        namespace: ns,
        config: cfg.objectStore,
        retainOnDestroy: cfg.retainOnDestroy,
        credentials: {
            accessKeyId: cfg.secrets.s3AccessKeyId,
            secretAccessKey: cfg.secrets.s3SecretAccessKey,
            readOnlyAccessKeyId: cfg.secrets.s3ReadOnlyAccessKeyId,
            readOnlySecretAccessKey: cfg.secrets.s3ReadOnlySecretAccessKey,
        },
    },
    platform,
);

// Where database dumps go: the nightly backups and the one before each schema upgrade.
// The backup bucket's name once provisioning has made the buckets and the users.
const backupBucketReady = pulumi.all([objectStore.ready, objectStore.backupBucket]).apply(([, bucket]) => bucket);
const dumps = {
    dumpImage: cfg.database.image,
    uploadImage: cfg.objectStore.clientImage,
    retain: cfg.backup.retain,
    store: { endpoint: objectStore.endpoint, bucket: backupBucketReady, credentialsSecretName: objectStore.backupSecretName, clientEgress: objectStore.clientEgress },
};

// The tracking server and registry, behind the authenticating edge.
const tracking = new TrackingServer(
    instance,
    {
        namespace: ns,
        config: cfg.tracking,
        publicUrl: edgeUrl(cfg.ingress),
        database,
        artifacts: {
            endpoint: objectStore.endpoint,
            bucket: objectStore.ready,
            region: objectStore.region,
            readWriteSecretName: objectStore.readWriteSecretName,
            clientEgress: objectStore.clientEgress,
        },
        preUpgradeDump: dumps,
        clientNamespaces,
        webhooks: cfg.deployController.webhooks ? { receiverEgress: webhookEgressRule(instance) } : undefined,
    },
    platform,
);
const ingress = new AuthIngress(
    instance,
    {
        namespace: ns,
        config: cfg.ingress,
        backend: { serviceName: tracking.serviceName, servicePort: tracking.servicePort },
        controllerNamespace: cfg.network.ingressControllerNamespace,
        // Each served model's v2 API, behind the same login (the names are KServe's, known before it runs).
        routes: cfg.serving.enabled ? cfg.serving.models.map((m) => ({ name: m.name, path: v2ModelPath(m.name), ...predictorService(m.name) })) : [],
    },
    platform,
);

// Serving: alias lookups and image builds reach the registry the way a data scientist does, through
// the ingress, as its first user.
const registryUser = cfg.ingress.users[0];
const registry = { trackingUri: ingress.url, username: registryUser, password: ingress.passwords.apply((p) => p[registryUser]) };
const imageRegistry = cfg.serving.enabled ? cfg.serving.imageRegistry : undefined;
const images = imageRegistry
    ? Object.fromEntries(
          cfg.serving.models.map((m) => {
              const image = new ModelImage(`${instance}-${m.name}`, { registeredModel: m.registeredModel, alias: m.alias, ...registry, registry: imageRegistry }, platform);
              return [m.name, image.imageRef];
          }),
      )
    : undefined;
const serving = cfg.serving.enabled
    ? new ModelServing(
          instance,
          {
              namespace: ns,
              config: cfg.serving,
              followedByController: cfg.deployController.enabled,
              images,
              objectStore: {
                  endpoint: objectStore.endpoint,
                  bucket: objectStore.ready,
                  region: objectStore.region,
                  accessKeyId: objectStore.readOnlyCredentials.accessKeyId,
                  secretAccessKey: objectStore.readOnlyCredentials.secretAccessKey,
              },
              registry: cfg.serving.resolveAliases ? registry : undefined,
              network: { clientNamespaces, artifactsEgress: objectStore.clientEgress },
          },
          platform,
      )
    : undefined;
if (serving && cfg.deployController.enabled) {
    new DeployController(
        instance,
        {
            namespace: ns,
            config: cfg.deployController,
            models: cfg.serving.models.map((m) => ({ ...m, template: serving.controllerTemplate(m) })),
            tracking: { uri: tracking.trackingUri, selectorLabels: tracking.selectorLabels },
            artifactsDestination: pulumi.interpolate`s3://${objectStore.ready}`,
            prometheus: {
                namespace: cfg.network.prometheusNamespace,
                serviceMonitor: cfg.monitoring.enabled,
                release: cfg.monitoring.prometheusRelease,
                scrapeInterval: cfg.monitoring.scrapeInterval,
            },
        },
        platform,
    );
}

// Operations: backups, then monitoring.
const databaseBackup = cfg.backup.enabled ? new DatabaseBackup(instance, { namespace: ns, config: cfg.backup, database, ...dumps }, platform) : undefined;
const artifactBackup = cfg.artifactBackup.enabled
    ? new ArtifactBackup(
          instance,
          {
              namespace: ns,
              config: cfg.artifactBackup,
              clientImage: cfg.objectStore.clientImage,
              store: {
                  endpoint: objectStore.endpoint,
                  bucket: objectStore.ready,
                  backupBucket: backupBucketReady,
                  prefix: objectStore.artifactBackupPrefix,
                  credentialsSecretName: objectStore.artifactBackupSecretName,
                  clientEgress: objectStore.clientEgress,
              },
          },
          platform,
      )
    : undefined;

// Monitoring, with alerts on the backups above.
if (cfg.monitoring.enabled) {
    new Monitoring(
        instance,
        {
            namespace: ns,
            config: cfg.monitoring,
            tracking: { serviceName: tracking.serviceName, selectorLabels: tracking.selectorLabels },
            postgresStatefulSet: database.statefulSet?.metadata.name,
            volumeStatefulSets: [database.statefulSet, objectStore.statefulSet].flatMap((s) => (s ? [s.metadata.name] : [])),
            backups: { database: databaseBackup?.watch, artifacts: artifactBackup?.watch },
            stackNamespace: cfg.network.prometheusNamespace,
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
    artifactBackup: objectStore.artifactBackupSecretName,
    ingressHtpasswd: ingress.htpasswdSecretName,
    ingressCredentials: ingress.credentialsSecretName,
};
/** Only ever a Pulumi secret: `pulumi stack output --show-secrets databasePassword`. */
export const databasePassword = pulumi.secret(database.password);
