// The registry deploy controller (controller/), deployed: a one-replica Deployment of the pinned
// official Node image running the controller bundled by esbuild at `pulumi up` and shipped in an
// immutable ConfigMap (gzip + binaryData above the ConfigMap size budget), so no image is built. Its
// ServiceAccount may only get/create/patch the followed InferenceServices (and Deployments in image
// mode) of the serving namespace. Credentials and the webhook secret are mounted Secret files.
import { createHash } from "crypto";
import * as path from "path";
import { gzipSync } from "zlib";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import {
    CLIENT_OF,
    containerSecurityContext,
    disruptionBudget,
    externalEgress,
    fromNamespaces,
    IMAGE_PULL_POLICY,
    labels,
    networkPolicy,
    podSecurityContext,
    selectorLabels,
    serviceAccount,
} from "./kube";
import { isPinnedImage } from "./images";
import type { Resources } from "./fields";
import { CONFIG_DEFAULTS, DEFAULT_WEBHOOK_PATH } from "../shared/controllerConfig";
import { isMlflowAlias } from "../shared/mlflow";

const COMPONENT = "deploy-controller";

/**
 * Node.js, pinned to the exact release the controller's tests run on (20.20.2). Node 20 left upstream
 * support on 2026-04-30: override `image` with a current LTS (the bundle targets Node ≥ 20).
 */
export const CONTROLLER_NODE_IMAGE = "docker.io/library/node:20.20.2-bookworm-slim";
export const WEBHOOK_PORT = CONFIG_DEFAULTS.http.webhookPort;
export const METRICS_PORT = CONFIG_DEFAULTS.http.metricsPort;
/** Where the ConfigMap (boot loader, bundle, config.json) is mounted. */
export const CODE_DIR = "/opt/mlflow-deploy-controller";
const SECRETS_DIR = "/run/secrets/mlflow-deploy-controller";
/** Above this the bundle is shipped gzip-compressed in binaryData. */
export const CONFIGMAP_BUDGET = 900 * 1024;
/** ConfigMaps hold at most 1 MiB; 64 KiB of it stay free for config.json (model templates). */
export const CONFIGMAP_LIMIT = 1024 * 1024 - 64 * 1024;
/** ServiceAccount token path that @kubernetes/client-node's loadFromCluster reads. */
export const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export const DEFAULTS = {
    alias: "champion",
    pollIntervalSeconds: CONFIG_DEFAULTS.pollIntervalSeconds,
    webhook: true,
    registerWebhook: true,
    serviceMonitor: true,
    prometheusRelease: "kube-prometheus-stack",
    scrapeInterval: "30s",
    image: CONTROLLER_NODE_IMAGE,
    trackingPort: 5000,
    kubernetesApiPorts: [443, 6443] as readonly number[],
    logLevel: CONFIG_DEFAULTS.logLevel,
    resources: {
        requests: { cpu: "50m", memory: "96Mi", "ephemeral-storage": "16Mi" },
        limits: { cpu: "500m", memory: "256Mi", "ephemeral-storage": "64Mi" },
    } as Resources,
} as const;

/** One model whose alias the controller follows into serving. */
export interface FollowedModel {
    /**
     * Name of the target: the InferenceService (or, with `deployment`, the Deployment) in the serving
     * namespace; also the `model` label of the controller's metrics. A DNS label. Required.
     */
    readonly name: string;
    /** Registered model in the MLflow registry. Required. */
    readonly registeredModel: string;
    /** Registry alias to follow. Defaults to `champion`. */
    readonly alias?: string;
    /**
     * The InferenceService to create if it does not exist (metadata and spec without storageUri), e.g.
     * `ModelServing.controllerTemplate(m)`, so a re-created one matches what ModelServing declares. Defaults to
     * a minimal MLflow/v2 predictor in KServe Standard mode.
     */
    readonly template?: pulumi.Input<Record<string, unknown>>;
    /**
     * Image mode: follow the alias by setting this Deployment container's image to
     * `<imageRepository>:<version>` (ModelImage's tags). The Deployment must exist; it is never created.
     * Defaults to none (InferenceService storageUri mode).
     */
    readonly deployment?: { readonly container: string; readonly imageRepository: string };
}

export interface DeployControllerArgs {
    /** Namespace the controller runs in: the platform's, beside the tracking server. Required. */
    readonly namespace: pulumi.Input<string>;
    /** Namespace of the InferenceServices / Deployments it manages; its Role lives there. Defaults to `namespace`. */
    readonly servingNamespace?: pulumi.Input<string>;
    /** The followed models. Required, at least one; names unique. */
    readonly models: readonly FollowedModel[];
    /** The tracking server, reached in-cluster. Required. */
    readonly tracking: {
        /** In-cluster URL (`TrackingServer.trackingUri`). Required. */
        readonly uri: pulumi.Input<string>;
        /** Labels of the tracking pods (`TrackingServer.selectorLabels`): egress to them, webhooks from them. Required. */
        readonly selectorLabels: pulumi.Input<Record<string, string>>;
        /** Container port of the tracking server. Defaults to `5000`. */
        readonly port?: number;
        /** Basic-auth user, when MLflow's own auth is on. Defaults to none. */
        readonly username?: pulumi.Input<string>;
        /** Basic-auth password, a Pulumi secret. Given together with `username`. */
        readonly password?: pulumi.Input<string>;
    };
    /** `s3://<bucket>[/<prefix>]`: the tracking server's `--artifacts-destination` (maps `mlflow-artifacts:/` sources). Required. */
    readonly artifactsDestination: pulumi.Input<string>;
    /** Registry poll interval, seconds (the safety net behind webhooks). Defaults to `30`. */
    readonly pollIntervalSeconds?: number;
    /** Receive MLflow webhooks (`model_version_alias.created/deleted`) on port 8080. Defaults to `true`. */
    readonly webhook?: boolean;
    /**
     * Register the receiver with MLflow at startup (`POST /api/2.0/mlflow/webhooks`). The tracking server
     * must then allow http webhooks to private addresses (MLFLOW_WEBHOOK_ALLOWED_SCHEMES=https,http,
     * MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true) and keep a stable MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY, and
     * its NetworkPolicy must allow egress to `webhookEgress`. Defaults to `true` (with `webhook`).
     */
    readonly registerWebhook?: boolean;
    /** HMAC secret of the webhook, a Pulumi secret. Defaults to a generated 48-character one. */
    readonly webhookSecret?: pulumi.Input<string>;
    /** Namespace of Prometheus, admitted to the metrics port. Required. */
    readonly prometheusNamespace: pulumi.Input<string>;
    /** Create a ServiceMonitor for /metrics (needs the prometheus-operator CRDs). Defaults to `true`. */
    readonly serviceMonitor?: boolean;
    /** `release` label the ServiceMonitor carries for kube-prometheus-stack's selector. Defaults to `kube-prometheus-stack`. */
    readonly prometheusRelease?: string;
    /** Scrape interval, a Prometheus duration. Defaults to `30s`. */
    readonly scrapeInterval?: string;
    /** Node.js image, pinned by tag or digest. Defaults to `CONTROLLER_NODE_IMAGE`. */
    readonly image?: string;
    /** Requests and limits. Defaults to 50m/96Mi/16Mi → 500m/256Mi/64Mi (cpu/memory/ephemeral-storage). */
    readonly resources?: Resources;
    /** Ports the Kubernetes API answers on (the Service's 443 and the API server's 6443). Defaults to `[443, 6443]`. */
    readonly kubernetesApiPorts?: readonly number[];
    /** `debug`, `info`, `warn` or `error`. Defaults to `info`. */
    readonly logLevel?: "debug" | "info" | "warn" | "error";
}

// ---------------------------------------------------------------------------------------------------
// The bundle

/** Loads the bundle from the ConfigMap: the plain file, or the gzip one compiled in memory (read-only root). */
export const BOOT_JS = `"use strict";
// mlflow-platform deploy controller loader: runs controller.js, or controller.js.gz (gzip, for bundles
// above the ConfigMap size budget) decompressed and compiled in memory; nothing is written to disk.
const fs = require("fs"), path = require("path"), zlib = require("zlib"), Module = require("module");
const plain = path.join(__dirname, "controller.js");
const gz = plain + ".gz";
if (fs.existsSync(gz)) {
    const m = new Module(plain, module);
    m.filename = plain;
    m.paths = Module._nodeModulePaths(__dirname);
    m._compile(zlib.gunzipSync(fs.readFileSync(gz)).toString("utf8"), plain);
} else {
    require(plain);
}
`;

export interface ControllerBundle {
    /** The minified CommonJS bundle of controller/cli.ts and its dependencies (@kubernetes/client-node). */
    readonly js: Buffer;
    readonly sha256: string;
}

let bundleCache: ControllerBundle | undefined;

/**
 * Bundles controller/ with esbuild (a devDependency, present after `npm ci`) into one file. Deterministic
 * for the same sources and esbuild version, so repeated `pulumi up` runs ship identical bytes.
 */
export function controllerBundle(): ControllerBundle {
    if (bundleCache) return bundleCache;
    let esbuild: typeof import("esbuild");
    try {
        esbuild = require("esbuild");
    } catch {
        throw new Error("DeployController: esbuild is needed to bundle the controller at `pulumi up`; run `npm ci` (with devDependencies)");
    }
    const result = esbuild.buildSync({
        entryPoints: [path.join(__dirname, "..", "controller", "cli.ts")],
        bundle: true,
        platform: "node",
        target: "node20",
        format: "cjs",
        minify: true,
        legalComments: "eof",
        write: false,
        logLevel: "silent",
        // Paths in the output relative to the repository, never the machine's absolute paths.
        absWorkingDir: path.join(__dirname, ".."),
    });
    if (result.errors.length > 0) throw new Error(`DeployController: bundling failed: ${result.errors.map((e) => e.text).join("; ")}`);
    const js = Buffer.from(result.outputFiles[0].contents);
    bundleCache = { js, sha256: createHash("sha256").update(js).digest("hex") };
    return bundleCache;
}

/** The ConfigMap content for a bundle: `controller.js` in `data` when it fits the budget, else `controller.js.gz` in `binaryData`. */
export function bundleFiles(js: Buffer, budget = CONFIGMAP_BUDGET, limit = CONFIGMAP_LIMIT): { data: Record<string, string>; binaryData: Record<string, string>; compressed: boolean; bytes: number } {
    if (js.length + BOOT_JS.length <= budget) {
        return { data: { "boot.js": BOOT_JS, "controller.js": js.toString("utf8") }, binaryData: {}, compressed: false, bytes: js.length };
    }
    // mtime 0 in the gzip header (Node's default), so the bytes depend on the input only.
    const gz = gzipSync(js, { level: 9 });
    if (Math.ceil(gz.length / 3) * 4 + BOOT_JS.length > limit) {
        throw new Error(`DeployController: the gzip-compressed controller bundle (${gz.length} bytes) does not fit a ConfigMap`);
    }
    return { data: { "boot.js": BOOT_JS }, binaryData: { "controller.js.gz": gz.toString("base64") }, compressed: true, bytes: gz.length };
}

// ---------------------------------------------------------------------------------------------------
// Pure builders (unit-tested)

/** The controller's config.json (controller/config.ts validates it at start). */
export function controllerConfig(p: {
    trackingUri: string;
    artifactsDestination: string;
    servingNamespace: string;
    models: readonly (FollowedModel & { template?: Record<string, unknown> })[];
    pollIntervalSeconds: number;
    credentials: boolean;
    webhook: boolean;
    registerWebhookUrl?: string;
    webhookName: string;
    logLevel: string;
}): Record<string, unknown> {
    return {
        mlflow: {
            trackingUri: p.trackingUri,
            artifactsDestination: p.artifactsDestination,
            ...(p.credentials ? { usernameFile: `${SECRETS_DIR}/mlflow/username`, passwordFile: `${SECRETS_DIR}/mlflow/password` } : {}),
            timeoutMs: CONFIG_DEFAULTS.timeoutMs,
        },
        pollIntervalSeconds: p.pollIntervalSeconds,
        backoff: CONFIG_DEFAULTS.backoff,
        http: CONFIG_DEFAULTS.http,
        ...(p.webhook
            ? {
                  webhook: {
                      secretFile: `${SECRETS_DIR}/webhook/secret`,
                      path: DEFAULT_WEBHOOK_PATH,
                      toleranceSeconds: CONFIG_DEFAULTS.toleranceSeconds,
                      ...(p.registerWebhookUrl ? { register: { name: p.webhookName, url: p.registerWebhookUrl } } : {}),
                  },
              }
            : {}),
        kubernetes: { timeoutMs: CONFIG_DEFAULTS.kubernetesTimeoutMs },
        models: p.models.map((m) => ({
            key: m.name,
            registeredModel: m.registeredModel,
            alias: m.alias ?? DEFAULTS.alias,
            target: m.deployment
                ? { kind: "Deployment", namespace: p.servingNamespace, name: m.name, container: m.deployment.container, imageRepository: m.deployment.imageRepository }
                : { kind: "InferenceService", namespace: p.servingNamespace, name: m.name, ...(m.template ? { template: m.template } : {}) },
        })),
        shutdownGraceMs: CONFIG_DEFAULTS.shutdownGraceMs,
        logLevel: p.logLevel,
    };
}

/**
 * The Role's rules: get/list/watch/patch on exactly the followed objects (resourceNames), create on
 * InferenceServices (creation cannot be limited by name). Deployments are never created.
 */
export function controllerRules(models: readonly FollowedModel[]): k8s.types.input.rbac.v1.PolicyRule[] {
    const isvcs = models.filter((m) => !m.deployment).map((m) => m.name);
    const deployments = models.filter((m) => m.deployment).map((m) => m.name);
    const rules: k8s.types.input.rbac.v1.PolicyRule[] = [];
    if (isvcs.length > 0) {
        rules.push({ apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], resourceNames: isvcs, verbs: ["get", "list", "watch", "patch"] });
        rules.push({ apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], verbs: ["create"] });
    }
    if (deployments.length > 0) rules.push({ apiGroups: ["apps"], resources: ["deployments"], resourceNames: deployments, verbs: ["get", "list", "watch", "patch"] });
    return rules;
}

/**
 * The egress rule the tracking server's NetworkPolicy needs to deliver webhooks to the controller named
 * `instance` (same namespace). Pure, so TrackingServer can take it before the controller exists.
 */
export function webhookEgressRule(instance: string): k8s.types.input.networking.v1.NetworkPolicyEgressRule {
    return { to: [{ podSelector: { matchLabels: selectorLabels(COMPONENT, instance) } }], ports: [{ protocol: "TCP", port: WEBHOOK_PORT }] };
}

const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

export function validateDeployControllerArgs(name: string, args: DeployControllerArgs): void {
    const fail = (msg: string): never => {
        throw new Error(`DeployController ${name}: ${msg}`);
    };
    if (!args.models || args.models.length === 0) fail("models must list at least one model to follow");
    const seen = new Set<string>();
    for (const m of args.models) {
        if (typeof m.name !== "string" || !DNS_LABEL.test(m.name) || m.name.length > 63) fail(`model "${m.name}": the name must be a DNS label (the target's name)`);
        if (seen.has(m.name)) fail(`model "${m.name}" is listed twice`);
        seen.add(m.name);
        if (!m.registeredModel) fail(`model "${m.name}": registeredModel is required`);
        const alias = m.alias ?? DEFAULTS.alias;
        if (!isMlflowAlias(alias)) fail(`model "${m.name}": alias "${alias}" is not a valid MLflow alias`);
        if (m.deployment && (!m.deployment.container || !m.deployment.imageRepository || /@|:[^/]*$/.test(m.deployment.imageRepository))) {
            fail(`model "${m.name}": deployment needs a container name and an imageRepository without tag or digest`);
        }
        if (m.deployment && m.template !== undefined) fail(`model "${m.name}": template applies to InferenceServices, not to a deployment target`);
    }
    const poll = args.pollIntervalSeconds ?? DEFAULTS.pollIntervalSeconds;
    if (!Number.isInteger(poll) || poll < 5 || poll > 3600) fail(`pollIntervalSeconds must be an integer 5–3600, not ${poll}`);
    if ((args.tracking.username === undefined) !== (args.tracking.password === undefined)) fail("tracking.username and tracking.password go together");
    const image = args.image ?? DEFAULTS.image;
    if (!isPinnedImage(image)) fail(`image "${image}" must pin a tag (not latest) or a sha256 digest`);
    if (args.registerWebhook === true && args.webhook === false) fail("registerWebhook needs webhook");
    if (args.logLevel !== undefined && !["debug", "info", "warn", "error"].includes(args.logLevel)) fail(`logLevel "${args.logLevel}" must be debug, info, warn or error`);
}

// ---------------------------------------------------------------------------------------------------

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
        super("mlflow-platform:serving:DeployController", name, {}, opts);
        validateDeployControllerArgs(name, args);
        const webhook = args.webhook ?? DEFAULTS.webhook;
        const registerWebhook = webhook && (args.registerWebhook ?? DEFAULTS.registerWebhook);
        const pollIntervalSeconds = args.pollIntervalSeconds ?? DEFAULTS.pollIntervalSeconds;
        const image = args.image ?? DEFAULTS.image;
        const resources = args.resources ?? DEFAULTS.resources;
        const trackingPort = args.tracking.port ?? DEFAULTS.trackingPort;
        const servingNamespace = args.servingNamespace ?? args.namespace;
        const child = { parent: this };
        const identity = { namespace: args.namespace, component: COMPONENT, instance: name };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, name) };
        const fullName = `${name}-${COMPONENT}`;
        this.selectorLabels = selectorLabels(COMPONENT, name);

        // Identity: a token only through the explicit projected volume below (short-lived, rotated).
        this.serviceAccount = serviceAccount(`${name}-sa`, identity, child);
        this.role = new k8s.rbac.v1.Role(
            `${name}-role`,
            { metadata: { name: fullName, namespace: servingNamespace, labels: meta.labels }, rules: controllerRules(args.models) },
            child,
        );
        this.roleBinding = new k8s.rbac.v1.RoleBinding(
            `${name}-rolebinding`,
            {
                metadata: { name: fullName, namespace: servingNamespace, labels: meta.labels },
                roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: this.role.metadata.name },
                subjects: [{ kind: "ServiceAccount", name: this.serviceAccount.metadata.name, namespace: args.namespace }],
            },
            child,
        );

        // Secrets, as files.
        const secretVolumes: k8s.types.input.core.v1.Volume[] = [];
        const secretMounts: k8s.types.input.core.v1.VolumeMount[] = [];
        if (webhook) {
            const secretValue = args.webhookSecret ?? new random.RandomPassword(`${name}-webhook-secret`, { length: 48, special: false }, child).result;
            const secret = new k8s.core.v1.Secret(
                `${name}-webhook`,
                { metadata: { ...meta, name: `${fullName}-webhook` }, type: "Opaque", stringData: { secret: pulumi.secret(secretValue) } },
                child,
            );
            this.webhookSecretName = secret.metadata.name;
            secretVolumes.push({ name: "webhook-secret", secret: { secretName: secret.metadata.name, defaultMode: 0o440, items: [{ key: "secret", path: "secret" }] } });
            secretMounts.push({ name: "webhook-secret", mountPath: `${SECRETS_DIR}/webhook`, readOnly: true });
        }
        const credentials = args.tracking.username !== undefined;
        if (credentials) {
            const secret = new k8s.core.v1.Secret(
                `${name}-mlflow-credentials`,
                {
                    metadata: { ...meta, name: `${fullName}-mlflow` },
                    type: "Opaque",
                    stringData: { username: pulumi.secret(args.tracking.username!), password: pulumi.secret(args.tracking.password!) },
                },
                child,
            );
            secretVolumes.push({ name: "mlflow-credentials", secret: { secretName: secret.metadata.name, defaultMode: 0o440 } });
            secretMounts.push({ name: "mlflow-credentials", mountPath: `${SECRETS_DIR}/mlflow`, readOnly: true });
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
                        ...(webhook ? [{ name: "webhook", port: WEBHOOK_PORT, targetPort: "webhook", protocol: "TCP" }] : []),
                        { name: "metrics", port: METRICS_PORT, targetPort: "metrics", protocol: "TCP" },
                    ],
                },
            },
            child,
        );
        this.serviceName = this.service.metadata.name;
        this.webhookUrl = pulumi.interpolate`http://${this.service.metadata.name}.${this.service.metadata.namespace}.svc:${WEBHOOK_PORT}${DEFAULT_WEBHOOK_PATH}`;

        // Code and config in one immutable ConfigMap whose name carries the content hash: any change
        // creates a new one and rolls the Deployment; the old one is deleted after.
        const bundle = controllerBundle();
        const files = bundleFiles(bundle.js);
        this.bundleBytes = files.bytes;
        this.bundleCompressed = files.compressed;
        const configJson = pulumi
            .all([
                args.tracking.uri,
                args.artifactsDestination,
                servingNamespace,
                pulumi.all(args.models.map((m) => pulumi.output(m.template))),
                registerWebhook ? this.webhookUrl : pulumi.output(undefined),
            ])
            .apply(([trackingUri, artifactsDestination, ns, templates, hookUrl]) =>
                JSON.stringify(
                    controllerConfig({
                        trackingUri,
                        artifactsDestination,
                        servingNamespace: ns,
                        models: args.models.map((m, i) => ({ ...m, template: templates[i] as Record<string, unknown> | undefined })),
                        pollIntervalSeconds,
                        credentials,
                        webhook,
                        registerWebhookUrl: hookUrl,
                        webhookName: `mlflow-platform-${name}-deploy-controller`,
                        logLevel: args.logLevel ?? DEFAULTS.logLevel,
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
        this.deployment = new k8s.apps.v1.Deployment(
            `${name}-${COMPONENT}`,
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
                                    image,
                                    imagePullPolicy: IMAGE_PULL_POLICY,
                                    command: ["node", "--max-old-space-size=160", `${CODE_DIR}/boot.js`, "--config", `${CODE_DIR}/config.json`],
                                    workingDir: "/tmp",
                                    env: [
                                        { name: "NODE_ENV", value: "production" },
                                        { name: "HOME", value: "/tmp" },
                                    ],
                                    ports: [
                                        ...(webhook ? [{ name: "webhook", containerPort: WEBHOOK_PORT, protocol: "TCP" }] : []),
                                        { name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" },
                                    ],
                                    startupProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 2, failureThreshold: 30 },
                                    readinessProbe: { httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 10, timeoutSeconds: 3 },
                                    livenessProbe: { httpGet: { path: "/healthz", port: "metrics" }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3 },
                                    resources,
                                    securityContext: containerSecurityContext(),
                                    volumeMounts: [
                                        { name: "code", mountPath: CODE_DIR, readOnly: true },
                                        { name: "kube-api-access", mountPath: SA_DIR, readOnly: true },
                                        ...secretMounts,
                                        { name: "tmp", mountPath: "/tmp" },
                                    ],
                                },
                            ],
                            volumes: [
                                { name: "code", configMap: { name: this.configMap.metadata.name, defaultMode: 0o444 } },
                                {
                                    // What automount would give, but explicit: a one-hour audience-bound token
                                    // the kubelet rotates (client-node re-reads it every minute), the cluster CA
                                    // and the namespace.
                                    name: "kube-api-access",
                                    projected: {
                                        defaultMode: 0o440,
                                        sources: [
                                            { serviceAccountToken: { path: "token", expirationSeconds: 3600 } },
                                            { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
                                            { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
                                        ],
                                    },
                                },
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
                    ...(webhook ? [{ from: [trackingPeer], ports: [{ protocol: "TCP", port: WEBHOOK_PORT }] }] : []),
                    { from: fromNamespaces([args.prometheusNamespace]), ports: [{ protocol: "TCP", port: METRICS_PORT }] },
                ],
                egress: [
                    { to: [trackingPeer], ports: [{ protocol: "TCP", port: trackingPort }] },
                    // The API server sits outside the pod network (Service 443, endpoints usually 6443).
                    ...(args.kubernetesApiPorts ?? DEFAULTS.kubernetesApiPorts).map((port) => externalEgress(port)),
                ],
            },
            child,
        );
        this.webhookEgress = pulumi.output(webhookEgressRule(name));

        if (args.serviceMonitor ?? DEFAULTS.serviceMonitor) {
            this.serviceMonitor = new k8s.apiextensions.CustomResource(
                `${name}-servicemonitor`,
                {
                    apiVersion: "monitoring.coreos.com/v1",
                    kind: "ServiceMonitor",
                    metadata: { ...meta, name: fullName, labels: { ...meta.labels, release: args.prometheusRelease ?? DEFAULTS.prometheusRelease } },
                    spec: {
                        selector: { matchLabels: this.selectorLabels },
                        namespaceSelector: { matchNames: [args.namespace] },
                        endpoints: [{ port: "metrics", path: "/metrics", scheme: "http", interval: args.scrapeInterval ?? DEFAULTS.scrapeInterval }],
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
