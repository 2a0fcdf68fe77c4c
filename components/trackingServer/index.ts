import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import {
    antiAffinity,
    CLIENT_OF,
    containerSecurityContext,
    disruptionBudget,
    fromNamespaces,
    IMAGE_PULL_POLICY,
    JOB_TTL_SECONDS,
    kubeApiEgress,
    labels,
    networkPolicy,
    podSecurityContext,
    renamedFrom,
    scratch,
    secretEnvEntrypoint,
    selectorLabels,
    serviceAccount,
} from "../kube";
import { TRACKING_PORT } from "../../shared/ports";
import { DatabaseConnection, libpqEnv } from "../database";
import { DUMP_CLIENT_LABELS, dumpSteps, type DumpStepsArgs } from "../databaseBackup";
import { GUARD_APP_NAME, GUARD_DIR, guardFiles } from "./guard";
import { migrationSteps, NO_DUMP_NEEDED, PRE_UPGRADE_PREFIX, resumePodSpec, UPGRADE_APP, UPGRADE_PLANNED, upgradeAccess, upgradeScript } from "./upgrade";
import { METRICS_DIR_SIZE, type TrackingConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "trackingServer";
const APP = "tracking";
export const METRICS_DIR = "/mlflow/metrics";
const SECRET_ENV_DIR = "/run/secrets/mlflow-env";
/**
 * libpq reads host, database, user and password from PG* variables, so the SQLAlchemy URI carries no
 * credentials and a password with `@ : / % #` cannot break it.
 */
export const BACKEND_STORE_URI = "postgresql+psycopg2://";


type NetworkPolicyEgressRule = k8s.types.input.networking.v1.NetworkPolicyEgressRule;

/** Where artifacts go; credentials are in `readWriteSecretName` (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). */
export interface ArtifactStore {
    readonly endpoint: pulumi.Input<string>;
    /** The bucket; resolve it only once the bucket exists (ObjectStore.ready). */
    readonly bucket: pulumi.Input<string>;
    readonly region: pulumi.Input<string>;
    readonly readWriteSecretName: pulumi.Input<string>;
    /** Egress rule that reaches the object store (from ObjectStore.clientEgress). */
    readonly clientEgress: pulumi.Input<NetworkPolicyEgressRule>;
}

export interface TrackingServerArgs {
    readonly namespace: pulumi.Input<string>;
    readonly config: TrackingConfig;
    /**
     * The edge's URL, what clients outside the cluster use (`https://mlflow.example.com`): its host joins
     * --allowed-hosts (with `config.extraAllowedHosts`), and it is the one origin of cross-origin requests.
     */
    readonly publicUrl: pulumi.Input<string>;
    readonly database: DatabaseConnection;
    readonly artifacts: ArtifactStore;
    /**
     * Where the migration Job dumps the database before it upgrades a schema that holds data (the
     * backup bucket's `pre-upgrade/`): restoring that dump is the rollback.
     */
    readonly preUpgradeDump: Omit<DumpStepsArgs, "database" | "prefix" | "onlyIf">;
    /**
     * Namespaces whose pods may call the server (the ingress controller's, Prometheus's). Pods of the
     * platform's namespace get in when labelled `mlflow-platform.io/tracking-client: "true"`.
     */
    readonly clientNamespaces: pulumi.Input<string>[];
    /**
     * Registry webhooks to an in-cluster receiver (the deploy controller): allows http and private
     * addresses for webhook URLs, gives the server a stable Fernet key for stored webhook secrets, and
     * lets it reach the receiver. Defaults to off (MLflow's https-only, public-address default).
     */
    readonly webhooks?: { readonly receiverEgress: pulumi.Input<NetworkPolicyEgressRule> };
}

/**
 * The MLflow tracking server and model registry: a migration Job (`mlflow db upgrade`) that must
 * succeed before the Deployment rolls, uvicorn workers with the security middleware on, proxied
 * artifacts in S3, Prometheus metrics, and the restricted security profile.
 */
export class TrackingServer extends pulumi.ComponentResource {
    public readonly serviceName: pulumi.Output<string>;
    public readonly servicePort: pulumi.Output<number>;
    /** Labels that select the server's pods (and that its Service selects by). */
    public readonly selectorLabels: pulumi.Output<Record<string, string>>;
    /** In-cluster URI of the tracking server, e.g. http://mlflow-tracking.mlflow.svc:5000. */
    public readonly trackingUri: pulumi.Output<string>;
    public readonly allowedHosts: pulumi.Output<string[]>;
    /** Origins whose cross-origin requests the server admits (the edge's, a port-forward's); every other Origin gets 403. */
    public readonly allowedOrigins: pulumi.Output<string[]>;
    public readonly migrationJob: k8s.batch.v1.Job;
    /** Scales the server back to its replica count after an upgrade stopped it (a no-op otherwise). */
    public readonly resumeJob: k8s.batch.v1.Job;
    public readonly deployment: k8s.apps.v1.Deployment;
    public readonly service: k8s.core.v1.Service;
    public readonly autoscaler?: k8s.autoscaling.v2.HorizontalPodAutoscaler;

    constructor(name: string, args: TrackingServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:TrackingServer`, name, {}, renamedFrom(opts, "mlflow-platform:tracking:TrackingServer"));
        const c = args.config;
        const child = { parent: this };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, APP, name) };
        const identity = { namespace: args.namespace, component: COMPONENT, app: APP, instance: name };
        const serviceName = `${name}-tracking`;

        // One stable key shared by every worker and replica, or CSRF tokens and sessions break.
        const flaskKey = new random.RandomPassword(`${name}-flask-key`, { length: 64, special: false }, child);
        const flaskSecret = new k8s.core.v1.Secret(
            `${name}-flask`,
            {
                metadata: { ...meta, name: `${name}-tracking-flask` },
                type: "Opaque",
                stringData: { MLFLOW_FLASK_SERVER_SECRET_KEY: flaskKey.result },
            },
            child,
        );
        const sa = serviceAccount(`${name}-sa`, identity, child);
        // Webhook secrets are stored encrypted with this key: it must survive restarts and match across replicas.
        const webhookKey = args.webhooks
            ? new k8s.core.v1.Secret(
                  `${name}-webhook-key`,
                  {
                      metadata: { ...meta, name: `${name}-tracking-webhook-key` },
                      type: "Opaque",
                      stringData: {
                          MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY: fernetKey(new random.RandomBytes(`${name}-webhook-key`, { length: 32 }, child).base64),
                      },
                  },
                  child,
              )
            : undefined;

        this.allowedHosts = pulumi
            .all([args.namespace, args.publicUrl])
            .apply(([ns, publicUrl]) => allowedHosts(serviceName, ns, [new URL(publicUrl).host, ...c.extraAllowedHosts]));
        this.allowedOrigins = pulumi.output(args.publicUrl).apply((u) => allowedOrigins(new URL(u).origin));

        // The guard MLflow runs as its app (guard.ts); a change of its files rolls the pods.
        const guard = guardFiles();
        const guardConfigMap = new k8s.core.v1.ConfigMap(
            `${name}-guard`,
            { metadata: { ...meta, name: `${name}-tracking-guard-${guard.sha256.slice(0, 10)}` }, immutable: true, data: guard.data },
            child,
        );

        const env = libpqEnv(args.database);
        const commonEnv = pulumi.all([env, args.artifacts.endpoint, args.artifacts.region, args.artifacts.bucket]).apply(
            ([pgEnv, endpoint, region, bucket]) => [
                ...pgEnv,
                { name: "MLFLOW_S3_ENDPOINT_URL", value: endpoint },
                { name: "AWS_DEFAULT_REGION", value: region },
                { name: "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", value: String(c.dbPoolSize) },
                { name: "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", value: String(c.dbMaxOverflow) },
                { name: "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE", value: "300" },
                // Model versions may only point into this platform's own artifact space.
                { name: "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX", value: sourceValidationRegex(bucket) },
                { name: "MLFLOW_DISABLE_TELEMETRY", value: "true" },
                { name: "DO_NOT_TRACK", value: "true" },
                // The AI gateway calls any provider URL a user configures and returns the answer: a
                // request forgery into the cluster from the server's network position. Off.
                { name: "MLFLOW_ENABLE_AI_GATEWAY", value: "false" },
                // The job runner and its huey consumers (GenAI scorers, prompt optimisation, evaluation)
                // call LLM endpoints the server's egress cannot reach; off, they no longer hold memory.
                { name: "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", value: "false" },
                { name: "PYTHONPATH", value: GUARD_DIR },
                { name: "HOME", value: "/tmp" },
                { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
                { name: "PYTHONUNBUFFERED", value: "1" },
                // Expanded by the kubelet in --allowed-hosts (`$(POD_IP):5000`).
                { name: POD_IP_ENV, valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
                ...(args.webhooks
                    ? [
                          // The receiver is an in-cluster http Service; this also lets any webhook target private addresses.
                          { name: "MLFLOW_WEBHOOK_ALLOWED_SCHEMES", value: "https,http" },
                          { name: "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", value: "true" },
                      ]
                    : []),
            ],
        );

        // Secrets reach the process as files turned into env at exec (see secretEnvEntrypoint).
        const secretEnvVolume = (withArtifacts: boolean) => ({
            name: "secret-env",
            projected: {
                defaultMode: 0o440,
                sources: [
                    { secret: { name: args.database.passwordSecretName, items: [{ key: "password", path: "PGPASSWORD" }] } },
                    ...(withArtifacts
                        ? [
                              {
                                  secret: {
                                      name: args.artifacts.readWriteSecretName,
                                      items: [
                                          { key: "AWS_ACCESS_KEY_ID", path: "AWS_ACCESS_KEY_ID" },
                                          { key: "AWS_SECRET_ACCESS_KEY", path: "AWS_SECRET_ACCESS_KEY" },
                                      ],
                                  },
                              },
                              { secret: { name: flaskSecret.metadata.name, items: [{ key: "MLFLOW_FLASK_SERVER_SECRET_KEY", path: "MLFLOW_FLASK_SERVER_SECRET_KEY" }] } },
                              ...(webhookKey
                                  ? [{ secret: { name: webhookKey.metadata.name, items: [{ key: "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", path: "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY" }] } }]
                                  : []),
                          ]
                        : []),
                ],
            },
        });
        const secretEnvMount = { name: "secret-env", mountPath: SECRET_ENV_DIR, readOnly: true };
        const tmp = scratch("tmp", "/tmp", c.tmpSizeLimit);

        // The upgrade steps (upgrade.ts): their own ServiceAccount, allowed to scale this one Deployment.
        const deploymentName = `${name}-server`;
        const upgradeIdentity = { ...identity, app: UPGRADE_APP };
        const upgradeSa = serviceAccount(`${name}-upgrade-sa`, upgradeIdentity, child);
        upgradeAccess(upgradeIdentity, upgradeSa.metadata.name, deploymentName, child);
        const script = upgradeScript();
        const scriptConfigMap = new k8s.core.v1.ConfigMap(
            `${name}-upgrade`,
            { metadata: { ...meta, name: `${name}-tracking-upgrade-${script.sha256.slice(0, 10)}` }, immutable: true, data: script.data },
            child,
        );
        const step = { image: c.image, deploymentName, scriptConfigMap: scriptConfigMap.metadata.name };
        const entrypoint = secretEnvEntrypoint(SECRET_ENV_DIR);
        const steps = migrationSteps(step, {
            entrypoint,
            env: pulumi.output(env).apply((pg) => [{ name: "BACKEND_STORE_URI", value: BACKEND_STORE_URI }, ...pg]),
            volumeMounts: [secretEnvMount, { name: "tmp", mountPath: "/tmp" }],
        });
        const dump = dumpSteps({
            ...args.preUpgradeDump,
            database: args.database,
            prefix: PRE_UPGRADE_PREFIX,
            onlyIf: { test: UPGRADE_PLANNED, skipped: NO_DUMP_NEEDED, ...steps.reader },
        });

        // Steps, in order: plan (and stop the writers when the schema holding data is behind), dump
        // (only then), migrate. A version change replaces the Job, so each change runs them once.
        this.migrationJob = new k8s.batch.v1.Job(
            `${name}-migrate`,
            {
                metadata: { ...meta, labels: labels(COMPONENT, "migration", name) },
                spec: {
                    // Retries cover a database that is still starting; every step is idempotent.
                    backoffLimit: 6,
                    activeDeadlineSeconds: 1800,
                    ttlSecondsAfterFinished: JOB_TTL_SECONDS,
                    template: {
                        metadata: { labels: { ...labels(COMPONENT, "migration", name), ...DUMP_CLIENT_LABELS } },
                        spec: {
                            restartPolicy: "OnFailure",
                            serviceAccountName: upgradeSa.metadata.name,
                            automountServiceAccountToken: false,
                            securityContext: podSecurityContext(),
                            initContainers: [steps.plan, dump.installMc, dump.dump],
                            containers: [steps.migrate],
                            volumes: [secretEnvVolume(false), { name: "tmp", emptyDir: { sizeLimit: "128Mi" } }, ...steps.volumes, ...dump.volumes],
                        },
                    },
                },
            },
            child,
        );

        const metrics = scratch("prometheus", METRICS_DIR, METRICS_DIR_SIZE);
        const spread = c.autoscaling.enabled || c.replicas >= 2;
        this.deployment = new k8s.apps.v1.Deployment(
            `${name}-server`,
            {
                metadata: {
                    ...meta,
                    // Named, so the upgrade steps' Role can name it.
                    name: deploymentName,
                    // An upgrade scales the server to zero before the migration (upgrade.ts); the
                    // update after it takes the replica count back instead of failing on that conflict.
                    annotations: { "pulumi.com/patchForce": "true" },
                },
                spec: {
                    // Under an HPA the Deployment must not fight it over the replica count.
                    replicas: c.autoscaling.enabled ? undefined : c.replicas,
                    selector: { matchLabels: selectorLabels(APP, name) },
                    strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
                    template: {
                        metadata: { labels: { ...meta.labels, [CLIENT_OF.database]: "true", [CLIENT_OF.artifacts]: "true" } },
                        spec: {
                            restartPolicy: "Always",
                            serviceAccountName: sa.metadata.name,
                            automountServiceAccountToken: false,
                            securityContext: podSecurityContext(),
                            affinity: spread ? antiAffinity(c.antiAffinity, APP, name) : undefined,
                            terminationGracePeriodSeconds: 60,
                            containers: [
                                {
                                    name: "mlflow",
                                    image: c.image,
                                    imagePullPolicy: IMAGE_PULL_POLICY,
                                    command: secretEnvEntrypoint(SECRET_ENV_DIR),
                                    args: pulumi
                                        .all([args.artifacts.bucket, this.allowedHosts, this.allowedOrigins])
                                        .apply(([bucket, hosts, origins]) => serverArgs(bucket, hosts, origins, c.workers)),
                                    workingDir: "/tmp",
                                    env: commonEnv,
                                    ports: [{ name: "http", containerPort: TRACKING_PORT, protocol: "TCP" }],
                                    startupProbe: { httpGet: { path: "/health", port: "http" }, periodSeconds: 5, failureThreshold: 60 },
                                    readinessProbe: { httpGet: { path: "/health", port: "http" }, periodSeconds: 10, timeoutSeconds: 5 },
                                    // A different endpoint and a slower cadence than readiness: restart only a hung server.
                                    livenessProbe: { httpGet: { path: "/version", port: "http" }, periodSeconds: 30, timeoutSeconds: 10, failureThreshold: 5 },
                                    resources: c.resources,
                                    securityContext: containerSecurityContext(),
                                    volumeMounts: [secretEnvMount, tmp.mount, metrics.mount, { name: "guard", mountPath: GUARD_DIR, readOnly: true }],
                                },
                            ],
                            volumes: [
                                secretEnvVolume(true),
                                tmp.volume,
                                metrics.volume,
                                { name: "guard", configMap: { name: guardConfigMap.metadata.name, items: guard.items, defaultMode: 0o444 } },
                            ],
                        },
                    },
                },
            },
            // Schema first: a server on an old schema refuses to start, one on a newer schema corrupts nothing.
            { parent: this, dependsOn: [this.migrationJob] },
        );

        this.service = new k8s.core.v1.Service(
            `${name}-svc`,
            {
                metadata: { ...meta, name: serviceName },
                spec: {
                    type: "ClusterIP",
                    selector: selectorLabels(APP, name),
                    ports: [{ name: "http", port: TRACKING_PORT, targetPort: "http" }],
                },
            },
            child,
        );
        disruptionBudget(`${name}-pdb`, identity, child);
        networkPolicy(
            `${name}-netpol`,
            {
                ...identity,
                ingress: [
                    {
                        from: [{ podSelector: { matchLabels: { [CLIENT_OF.tracking]: "true" } } }, ...fromNamespaces(args.clientNamespaces)],
                        ports: [{ protocol: "TCP", port: TRACKING_PORT }],
                    },
                ],
                egress: [args.database.clientEgress, args.artifacts.clientEgress, ...(args.webhooks ? [args.webhooks.receiverEgress] : [])],
            },
            child,
        );
        networkPolicy(
            `${name}-migrate-netpol`,
            { namespace: args.namespace, component: COMPONENT, app: "migration", instance: name, ingress: [], egress: [args.database.clientEgress, args.preUpgradeDump.store.clientEgress, ...kubeApiEgress()] },
            child,
        );
        this.resumeJob = new k8s.batch.v1.Job(
            `${name}-upgrade-resume`,
            {
                metadata: { ...meta, labels: labels(COMPONENT, UPGRADE_APP, name) },
                spec: {
                    backoffLimit: 6,
                    activeDeadlineSeconds: 900,
                    ttlSecondsAfterFinished: JOB_TTL_SECONDS,
                    template: {
                        // The migration Job's name is in the template, so each new migration Job brings a new one of these.
                        metadata: { labels: labels(COMPONENT, UPGRADE_APP, name), annotations: { "mlflow-platform.io/after-migration": this.migrationJob.metadata.name } },
                        spec: resumePodSpec(step, upgradeSa.metadata.name, podSecurityContext()),
                    },
                },
            },
            { parent: this, dependsOn: [this.deployment] },
        );
        networkPolicy(`${name}-upgrade-netpol`, { ...upgradeIdentity, ingress: [], egress: kubeApiEgress() }, child);

        if (c.autoscaling.enabled) {
            this.autoscaler = new k8s.autoscaling.v2.HorizontalPodAutoscaler(
                `${name}-hpa`,
                {
                    metadata: meta,
                    spec: {
                        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: this.deployment.metadata.name },
                        minReplicas: c.autoscaling.minReplicas,
                        maxReplicas: c.autoscaling.maxReplicas,
                        metrics: [
                            { type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: c.autoscaling.targetCpuPercent } } },
                        ],
                    },
                },
                child,
            );
        }

        this.serviceName = this.service.metadata.name;
        this.servicePort = this.service.spec.ports.apply((ports) => ports[0].port);
        this.selectorLabels = this.service.spec.selector;
        this.trackingUri = pulumi.interpolate`http://${this.service.metadata.name}.${this.service.metadata.namespace}.svc:${TRACKING_PORT}`;
        this.registerOutputs({
            serviceName: this.serviceName,
            servicePort: this.servicePort,
            selectorLabels: this.selectorLabels,
            trackingUri: this.trackingUri,
            allowedHosts: this.allowedHosts,
            allowedOrigins: this.allowedOrigins,
        });
    }
}

/** A Fernet key (what MLflow's webhook store expects): 32 random bytes in url-safe base64, padded. */
export function fernetKey(base64: pulumi.Output<string>): pulumi.Output<string> {
    return base64.apply((b) => b.replace(/\+/g, "-").replace(/\//g, "_"));
}

/** The `mlflow server` command line of the tracking container: MLflow run as the platform's guard (guard.ts). */
export function serverArgs(bucket: string, hosts: string[], origins: string[], workers: number): string[] {
    return [
        "mlflow", "server",
        "--host", "0.0.0.0",
        "--port", String(TRACKING_PORT),
        "--workers", String(workers),
        "--backend-store-uri", BACKEND_STORE_URI,
        "--artifacts-destination", `s3://${bucket}`,
        "--serve-artifacts",
        "--allowed-hosts", hosts.join(","),
        "--cors-allowed-origins", origins.join(","),
        "--app-name", GUARD_APP_NAME,
        "--expose-prometheus", METRICS_DIR,
    ];
}

/** The pod's IP, from the downward API: the kubelet expands `$(POD_IP)` in the args from it. */
export const POD_IP_ENV = "POD_IP";

/**
 * Host headers the security middleware accepts, each meaning one name or address: the public hosts,
 * every in-cluster name of the Service (with and without the port), loopback on the server's port
 * (`kubectl port-forward … 5000:5000`), and the pod's own IP on that port (Prometheus scrapes the pod
 * by IP). MLflow compares an entry without `*` exactly and one with `*` by fnmatch, so none of these
 * is a pattern: `10.*` would admit `10.evil.example`, defeating the DNS-rebinding check. The kubelet's
 * probes need no entry: MLflow exempts /health and /version from the check. Never `*`.
 */
export function allowedHosts(service: string, namespace: string, publicHosts: string[]): string[] {
    const names = [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`];
    const loopback = ["localhost", "127.0.0.1", "[::1]"];
    const onPort = (hosts: string[]) => hosts.map((h) => `${h}:${TRACKING_PORT}`);
    const hosts = [...publicHosts, ...names, ...onPort(names), ...loopback, ...onPort(loopback), ...onPort([`$(${POD_IP_ENV})`])];
    if (hosts.includes("*")) throw new Error("allowed hosts must never include `*`");
    return [...new Set(hosts)];
}

/**
 * Origins whose cross-origin requests the server (its guard) admits: the edge's, and the UI opened
 * through `kubectl port-forward … 5000:5000`, whose page is the forward itself.
 */
export function allowedOrigins(edgeOrigin: string): string[] {
    return [edgeOrigin, `http://localhost:${TRACKING_PORT}`, `http://127.0.0.1:${TRACKING_PORT}`];
}

/** Model version sources MLflow accepts: its own proxied artifacts, logged models, runs, or this bucket. */
export function sourceValidationRegex(bucket: string): string {
    const escaped = bucket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return `^(mlflow-artifacts:/|models:/|runs:/|s3://${escaped}/).*`;
}
