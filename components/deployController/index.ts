// The registry deploy controller (controller/), deployed: a one-replica Deployment of the pinned
// official Node image running the controller bundle from an immutable ConfigMap (bundle.ts), so no
// image is built. Its ServiceAccount may only get/create/patch the followed InferenceServices; the
// webhook secret is a mounted Secret file.
import { createHash } from "crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { DEFAULT_WEBHOOK_PATH } from "../../shared/controllerConfig";
import { CONTROLLER_PORTS, TRACKING_PORT } from "../../shared/ports";
import {
    CLIENT_OF,
    containerSecurityContext,
    disruptionBudget,
    kubeApiAccess,
    kubeApiEgress,
    fromNamespaces,
    IMAGE_PULL_POLICY,
    labels,
    networkPolicy,
    podSecurityContext,
    renamedFrom,
    selectorLabels,
    serviceAccount,
} from "../kube";
import { bundleFiles, CODE_DIR, controllerBundle } from "./bundle";
import { controllerConfig, controllerRules, SECRETS_DIR } from "./config";
import type { DeployControllerConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "deployController";
const APP = "deploy-controller";
const RESOURCES = {
    requests: { cpu: "50m", memory: "96Mi", "ephemeral-storage": "16Mi" },
    limits: { cpu: "500m", memory: "256Mi", "ephemeral-storage": "64Mi" },
};

export interface DeployControllerArgs {
    /** Namespace the controller runs in: the platform's, beside the tracking server and the InferenceServices. */
    readonly namespace: pulumi.Input<string>;
    readonly config: DeployControllerConfig;
    /** The followed models: InferenceServices of the same name, with the template to create a missing one from. */
    readonly models: readonly {
        readonly name: string;
        readonly registeredModel: string;
        readonly alias: string;
        readonly template: pulumi.Input<Record<string, unknown>>;
    }[];
    /** The tracking server, reached in-cluster: its URL and the labels of its pods (egress to them, webhooks from them). */
    readonly tracking: { readonly uri: pulumi.Input<string>; readonly selectorLabels: pulumi.Input<Record<string, string>> };
    /** `s3://<bucket>[/<prefix>]`: the tracking server's `--artifacts-destination` (maps `mlflow-artifacts:/` sources). */
    readonly artifactsDestination: pulumi.Input<string>;
    /** Prometheus: its namespace (admitted to the metrics port), and a ServiceMonitor when monitoring is on. */
    readonly prometheus: {
        readonly namespace: pulumi.Input<string>;
        readonly serviceMonitor: boolean;
        readonly release: string;
        readonly scrapeInterval: string;
    };
}

/**
 * The egress rule the tracking server's NetworkPolicy needs to deliver webhooks to the controller named
 * `instance` (same namespace). Pure, so TrackingServer can take it before the controller exists.
 */
export function webhookEgressRule(instance: string): k8s.types.input.networking.v1.NetworkPolicyEgressRule {
    return { to: [{ podSelector: { matchLabels: selectorLabels(APP, instance) } }], ports: [{ protocol: "TCP", port: CONTROLLER_PORTS.webhook }] };
}

/**
 * Follows registry aliases into serving: polls `GET /api/2.0/mlflow/registered-models/alias` (and takes
 * MLflow webhooks as a trigger), maps the version to its s3:// location and creates or patches the
 * InferenceService (storageUri + version annotation, server-side apply as `mlflow-deploy-controller`).
 */
export class DeployController extends pulumi.ComponentResource {
    public readonly serviceName: pulumi.Output<string>;
    /** URL MLflow delivers webhooks to (in-cluster). */
    public readonly webhookUrl: pulumi.Output<string>;
    /** Egress rule the tracking server needs to deliver webhooks (add it to its NetworkPolicy). */
    public readonly webhookEgress: pulumi.Output<k8s.types.input.networking.v1.NetworkPolicyEgressRule>;
    /** Labels that select the controller's pods and Service. */
    public readonly selectorLabels: Record<string, string>;
    /** Bytes of the bundle as shipped (gzip-compressed when above the budget). */
    public readonly bundleBytes: number;
    public readonly bundleCompressed: boolean;
    public readonly webhookSecretName?: pulumi.Output<string>;
    public readonly deployment: k8s.apps.v1.Deployment;
    public readonly configMap: k8s.core.v1.ConfigMap;
    public readonly service: k8s.core.v1.Service;
    public readonly serviceAccount: k8s.core.v1.ServiceAccount;
    public readonly role: k8s.rbac.v1.Role;
    public readonly roleBinding: k8s.rbac.v1.RoleBinding;
    public readonly networkPolicy: k8s.networking.v1.NetworkPolicy;
    public readonly serviceMonitor?: k8s.apiextensions.CustomResource;

    constructor(name: string, args: DeployControllerArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:DeployController`, name, {}, renamedFrom(opts, "mlflow-platform:serving:DeployController"));
        const c = args.config;
        const webhook = c.webhooks;
        const child = { parent: this };
        const identity = { namespace: args.namespace, component: COMPONENT, app: APP, instance: name };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, APP, name) };
        const fullName = `${name}-${APP}`;
        this.selectorLabels = selectorLabels(APP, name);

        // Identity: a token only through the explicit projected volume below (short-lived, rotated).
        this.serviceAccount = serviceAccount(`${name}-sa`, identity, child);
        this.role = new k8s.rbac.v1.Role(
            `${name}-role`,
            { metadata: { name: fullName, namespace: args.namespace, labels: meta.labels }, rules: controllerRules(args.models) },
            child,
        );
        this.roleBinding = new k8s.rbac.v1.RoleBinding(
            `${name}-rolebinding`,
            {
                metadata: { name: fullName, namespace: args.namespace, labels: meta.labels },
                roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: this.role.metadata.name },
                subjects: [{ kind: "ServiceAccount", name: this.serviceAccount.metadata.name, namespace: args.namespace }],
            },
            child,
        );

        // Secrets, as files.
        const secretVolumes: k8s.types.input.core.v1.Volume[] = [];
        const secretMounts: k8s.types.input.core.v1.VolumeMount[] = [];
        if (webhook) {
            const secretValue = new random.RandomPassword(`${name}-webhook-secret`, { length: 48, special: false }, child).result;
            const secret = new k8s.core.v1.Secret(
                `${name}-webhook`,
                { metadata: { ...meta, name: `${fullName}-webhook` }, type: "Opaque", stringData: { secret: pulumi.secret(secretValue) } },
                child,
            );
            this.webhookSecretName = secret.metadata.name;
            secretVolumes.push({ name: "webhook-secret", secret: { secretName: secret.metadata.name, defaultMode: 0o440, items: [{ key: "secret", path: "secret" }] } });
            secretMounts.push({ name: "webhook-secret", mountPath: `${SECRETS_DIR}/webhook`, readOnly: true });
        }

        // The Service (webhook + metrics); its in-cluster name is the webhook URL MLflow calls.
        this.service = new k8s.core.v1.Service(
            `${name}-svc`,
            {
                metadata: { ...meta, name: fullName },
                spec: {
                    type: "ClusterIP",
                    selector: this.selectorLabels,
                    ports: [
                        ...(webhook ? [{ name: "webhook", port: CONTROLLER_PORTS.webhook, targetPort: "webhook", protocol: "TCP" }] : []),
                        { name: "metrics", port: CONTROLLER_PORTS.metrics, targetPort: "metrics", protocol: "TCP" },
                    ],
                },
            },
            child,
        );
        this.serviceName = this.service.metadata.name;
        // From the name the Service is given, not its outputs: `pulumi up` completes a Service only once
        // its endpoints are ready, and those are this controller's pods, whose config holds the URL; waiting
        // on the Service's outputs would make the Deployment wait for itself.
        this.webhookUrl = pulumi.interpolate`http://${fullName}.${args.namespace}.svc:${CONTROLLER_PORTS.webhook}${DEFAULT_WEBHOOK_PATH}`;

        // Code and config in one immutable ConfigMap whose name carries the content hash: any change
        // creates a new one and rolls the Deployment; the old one is deleted after.
        const bundle = controllerBundle();
        const files = bundleFiles(bundle.js);
        this.bundleBytes = files.bytes;
        this.bundleCompressed = files.compressed;
        const configJson = pulumi
            .all([args.tracking.uri, args.artifactsDestination, args.namespace, pulumi.all(args.models.map((m) => pulumi.output(m.template))), this.webhookUrl])
            .apply(([trackingUri, artifactsDestination, namespace, templates, webhookUrl]) =>
                JSON.stringify(
                    controllerConfig({
                        trackingUri,
                        artifactsDestination,
                        namespace,
                        models: args.models.map((m, i) => ({ ...m, template: templates[i] })),
                        pollIntervalSeconds: c.pollIntervalSeconds,
                        webhook: webhook ? { url: webhookUrl, name: `mlflow-platform-${name}-deploy-controller` } : undefined,
                    }),
                    null,
                    2,
                ),
            );
        const contentHash = configJson.apply((c) => createHash("sha256").update(bundle.sha256).update(c).digest("hex").slice(0, 10));
        this.configMap = new k8s.core.v1.ConfigMap(
            `${name}-code`,
            {
                metadata: { ...meta, name: pulumi.interpolate`${fullName}-${contentHash}`, annotations: { "mlflow-platform/bundle-sha256": bundle.sha256 } },
                immutable: true,
                data: configJson.apply((c) => {
                    const data = { ...files.data, "config.json": c };
                    const payload = [...Object.values(data), ...Object.values(files.binaryData)].reduce((n, v) => n + Buffer.byteLength(v), 0);
                    if (payload > 1024 * 1024) throw new Error(`DeployController ${name}: the ConfigMap would hold ${payload} bytes, over the 1 MiB limit (config.json: ${c.length})`);
                    return data;
                }),
                ...(files.compressed ? { binaryData: files.binaryData } : {}),
            },
            child,
        );

        const podLabels = { ...meta.labels, [CLIENT_OF.tracking]: "true" };
        const apiAccess = kubeApiAccess();
        this.deployment = new k8s.apps.v1.Deployment(
            `${name}-${APP}`,
            {
                metadata: meta,
                spec: {
                    // One writer: two replicas without leader election would both patch each change.
                    // No surge: a rollout stops the old pod (which starts no pass after SIGTERM) before
                    // the new one runs; webhooks missed in the gap are covered by its first pass.
                    replicas: 1,
                    strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } },
                    selector: { matchLabels: this.selectorLabels },
                    template: {
                        metadata: { labels: podLabels },
                        spec: {
                            restartPolicy: "Always",
                            serviceAccountName: this.serviceAccount.metadata.name,
                            automountServiceAccountToken: false,
                            securityContext: podSecurityContext(),
                            terminationGracePeriodSeconds: 30,
                            containers: [
                                {
                                    name: "controller",
                                    image: c.image,
                                    imagePullPolicy: IMAGE_PULL_POLICY,
                                    command: ["node", "--max-old-space-size=160", `${CODE_DIR}/boot.js`, "--config", `${CODE_DIR}/config.json`],
                                    workingDir: "/tmp",
                                    env: [
                                        { name: "NODE_ENV", value: "production" },
                                        { name: "HOME", value: "/tmp" },
                                    ],
                                    ports: [
                                        ...(webhook ? [{ name: "webhook", containerPort: CONTROLLER_PORTS.webhook, protocol: "TCP" }] : []),
                                        { name: "metrics", containerPort: CONTROLLER_PORTS.metrics, protocol: "TCP" },
                                    ],
                                    startupProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 2, failureThreshold: 30 },
                                    readinessProbe: { httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 10, timeoutSeconds: 3 },
                                    livenessProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3 },
                                    resources: RESOURCES,
                                    securityContext: containerSecurityContext(),
                                    volumeMounts: [
                                        { name: "code", mountPath: CODE_DIR, readOnly: true },
                                        apiAccess.mount,
                                        ...secretMounts,
                                        { name: "tmp", mountPath: "/tmp" },
                                    ],
                                },
                            ],
                            volumes: [
                                { name: "code", configMap: { name: this.configMap.metadata.name, defaultMode: 0o444 } },
                                // client-node re-reads the rotated token every minute.
                                apiAccess.volume,
                                ...secretVolumes,
                                { name: "tmp", emptyDir: { sizeLimit: "16Mi" } },
                            ],
                        },
                    },
                },
            },
            child,
        );

        disruptionBudget(`${name}-pdb`, identity, child);
        const trackingPeer = { podSelector: { matchLabels: args.tracking.selectorLabels } };
        this.networkPolicy = networkPolicy(
            `${name}-netpol`,
            {
                ...identity,
                ingress: [
                    ...(webhook ? [{ from: [trackingPeer], ports: [{ protocol: "TCP", port: CONTROLLER_PORTS.webhook }] }] : []),
                    { from: fromNamespaces([args.prometheus.namespace]), ports: [{ protocol: "TCP", port: CONTROLLER_PORTS.metrics }] },
                ],
                egress: [
                    { to: [trackingPeer], ports: [{ protocol: "TCP", port: TRACKING_PORT }] },
                    ...kubeApiEgress(),
                ],
            },
            child,
        );
        this.webhookEgress = pulumi.output(webhookEgressRule(name));

        if (args.prometheus.serviceMonitor) {
            this.serviceMonitor = new k8s.apiextensions.CustomResource(
                `${name}-servicemonitor`,
                {
                    apiVersion: "monitoring.coreos.com/v1",
                    kind: "ServiceMonitor",
                    metadata: { ...meta, name: fullName, labels: { ...meta.labels, release: args.prometheus.release } },
                    spec: {
                        selector: { matchLabels: this.selectorLabels },
                        namespaceSelector: { matchNames: [args.namespace] },
                        endpoints: [{ port: "metrics", path: "/metrics", scheme: "http", interval: args.prometheus.scrapeInterval }],
                    },
                },
                child,
            );
        }

        this.registerOutputs({
            serviceName: this.serviceName,
            webhookUrl: this.webhookUrl,
            webhookEgress: this.webhookEgress,
            selectorLabels: this.selectorLabels,
            bundleBytes: this.bundleBytes,
            bundleCompressed: this.bundleCompressed,
            webhookSecretName: this.webhookSecretName,
        });
    }
}
