import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import {
    CLIENT_OF,
    containerSecurityContext,
    deepMerge,
    HELM_RELEASE,
    dnsEgress,
    fromNamespaces,
    IMAGE_PULL_POLICY,
    labels,
    podSecurityContext,
} from "./kube";
import { parseS3Uri, resolveAlias, ResolvedModel } from "../shared/mlflowRegistry";
import type { Resources } from "./fields";
import { FIELD_MANAGER, isMlflowAlias, VERSION_ANNOTATION } from "../shared/mlflow";
import { isPinnedImage } from "./images";

const COMPONENT = "model-serving";

/**
 * MLServer, pinned. 1.7.1 is the last release (PyPI `mlserver` and `mlserver-mlflow`; the project is
 * unmaintained since Seldon's liquidation, SeldonIO/MLServer#2404). KServe v0.20's bundled runtime
 * still runs 1.5.0.
 */
export const MLSERVER_VERSION = "1.7.1";

/**
 * The runtime image: MLServer's per-runtime tag `<version>-mlflow` (MLServer's release script builds
 * one per runtime), which carries `mlserver` plus `mlserver-mlflow`. `-slim` has no runtime at all
 * (importing `mlserver_mlflow.MLflowRuntime` fails); the full `<version>` tag works too but carries
 * every runtime (torch, transformers, …: a ~4 GB layer). Override with a digest from your mirror.
 */
export const MLSERVER_IMAGE = `docker.io/seldonio/mlserver:${MLSERVER_VERSION}-mlflow`;

/** KServe, pinned: the OCI charts installed when `installKServe` is on. */
export const KSERVE_VERSION = "v0.20.0";
export const KSERVE_CHARTS = {
    crd: "oci://ghcr.io/kserve/charts/kserve-crd",
    resources: "oci://ghcr.io/kserve/charts/kserve-resources",
    version: KSERVE_VERSION,
} as const;

/** Standard mode (formerly RawDeployment): Deployment + Service + HPA, no Knative. */
export const DEPLOYMENT_MODE = "Standard";
export const DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode";
export const HTTP_PORT = 8080;
export const GRPC_PORT = 9000;
/** MLServer's metrics server (settings.metrics_port, default 8082; not 8080 as KServe's runtime annotation says). */
export const METRICS_PORT = 8082;
/** Where KServe's storage initializer puts the model (storageUri mode). */
export const MODEL_MOUNT = "/mnt/models";
/** Where `mlflow models generate-dockerfile` puts the model (image mode). */
export const IMAGE_MODEL_DIR = "/opt/ml/model";
/** KServe's name for the serving container; the ServingRuntime and custom predictors must use it. */
export const KSERVE_CONTAINER = "kserve-container";

/** Defaults of every optional ModelServingArgs / ServedModel field. */
export const DEFAULTS = {
    models: [] as readonly ServedModel[],
    alias: "champion",
    replicas: { min: 1, max: 1 },
    targetCpuPercent: 70,
    runtimeScope: "namespaced" as "namespaced" | "cluster",
    runtimeImage: MLSERVER_IMAGE,
    resources: {
        requests: { cpu: "250m", memory: "1Gi", "ephemeral-storage": "1Gi" },
        limits: { cpu: "2", memory: "2Gi", "ephemeral-storage": "4Gi" },
    } as Resources,
    tmpSizeLimit: "1Gi",
    parallelWorkers: 1,
    registryTimeoutMs: 5000,
    verifySsl: true,
    installKServe: false,
    kserveNamespace: "kserve",
} as const;

/** Canary in Standard mode: a second predictor that gets a share of the traffic (KServe ≥ v0.20 `spec.canary`). */
export interface CanaryModel {
    /** s3:// location of the candidate's model directory. Exactly one of `storageUri` and `image`, matching the stable predictor's mode. */
    readonly storageUri?: pulumi.Input<string>;
    /** Candidate model image (image mode). Exactly one of `storageUri` and `image`. */
    readonly image?: pulumi.Input<string>;
    /** Share of requests, percent: an integer 1–99. Required. KServe splits by replica count (see README). */
    readonly trafficPercent: number;
}

/** One model to serve: one InferenceService. */
export interface ServedModel {
    /**
     * InferenceService name, also the v2 model name (`/v2/models/<name>/infer`): a DNS label that starts
     * with a letter (`[a-z]([-a-z0-9]*[a-z0-9])?`), at most 45 characters so `<name>-predictor-canary`
     * stays a valid Service name. Unique within the component. Required.
     */
    readonly name: string;
    /** Registered model name in the MLflow registry. Required. */
    readonly registeredModel: string;
    /** Registry alias to serve. Defaults to `champion`. Not `latest`, not `v<N>` (both reserved by MLflow). */
    readonly alias?: string;
    /**
     * s3:// location of the model directory (the one holding `MLmodel`). Used when the alias cannot be
     * resolved (no `registry.trackingUri`, or the server is unreachable). No default: without it and
     * without a reachable registry, `pulumi up` fails with an error naming this model.
     */
    readonly storageUri?: pulumi.Input<string>;
    /**
     * Image mode: a model image built by `ModelImage` (its `imageRef`). The predictor then runs that image
     * as a custom container (MLServer, v2, port 8080) and nothing is downloaded. Excludes `storageUri`.
     */
    readonly image?: pulumi.Input<string>;
    /** Replicas; `max > min` adds KServe's HPA on CPU. Defaults to `{ min: 1, max: 1 }`. `min` ≥ 1 (no scale-to-zero in Standard mode). */
    readonly replicas?: { readonly min: number; readonly max: number };
    /** HPA target CPU utilisation, percent (1–100), used only when `replicas.max > replicas.min`. Defaults to `70`. */
    readonly targetCpuPercent?: number;
    /**
     * Requests and limits of the model container. Defaults to 250m/1Gi/1Gi → 2/2Gi/4Gi
     * (cpu/memory/ephemeral-storage); the ephemeral-storage limit must hold the downloaded model.
     */
    readonly resources?: Resources;
    /** A canary predictor taking `trafficPercent` of the requests. Defaults to none. */
    readonly canary?: CanaryModel;
    /**
     * The deploy controller (components/deployController.ts) follows this model's alias. Pulumi then sets
     * `spec.predictor.model.storageUri` only when it creates the InferenceService and ignores it afterwards
     * (`ignoreChanges`), and never writes the version annotation: the controller owns both fields through
     * server-side apply (field manager `mlflow-deploy-controller`). With neither `storageUri` nor a
     * `registry`, Pulumi does not declare the InferenceService at all: the controller creates it from its
     * template on the alias's first version (`controllerCreates`). storageUri mode only. Defaults to `false`.
     */
    readonly followedByController?: boolean;
}

/** InferenceService fields the deploy controller owns on followed models; Pulumi ignores them after creation. */
export const CONTROLLER_OWNED_FIELDS = ["spec.predictor.model.storageUri"] as const;

/** Where the models are and how serving reads them: wired from ObjectStore outputs. */
export interface ServingObjectStore {
    /** S3 endpoint URL, e.g. `http://mlflow-minio.mlflow.svc:9000` (ObjectStore.endpoint). Required. */
    readonly endpoint: pulumi.Input<string>;
    /** Artifact bucket, the tracking server's `--artifacts-destination s3://<bucket>` (ObjectStore.bucket). Required. */
    readonly bucket: pulumi.Input<string>;
    /** S3 region (ObjectStore.region). Required. */
    readonly region: pulumi.Input<string>;
    /**
     * Read-only access key id, as a Pulumi secret. With `secretAccessKey`, ModelServing writes its own
     * Secret in the serving namespace. Excludes `readOnlySecretName`.
     */
    readonly accessKeyId?: pulumi.Input<string>;
    /** Read-only secret access key, as a Pulumi secret. Given together with `accessKeyId`. */
    readonly secretAccessKey?: pulumi.Input<string>;
    /**
     * An existing Secret in the serving namespace with keys AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
     * (ObjectStore.readOnlySecretName, when serving shares the platform namespace). Used instead of
     * the key pair; the S3 annotations then sit on the ServiceAccount only.
     */
    readonly readOnlySecretName?: pulumi.Input<string>;
    /** Verify the endpoint's TLS certificate (https endpoints only). Defaults to `true`. */
    readonly verifySsl?: boolean;
}

/** How `pulumi up` reaches the MLflow registry to resolve aliases. */
export interface ServingRegistry {
    /**
     * Tracking server URL reachable from where `pulumi` runs, usually the ingress URL
     * (AuthIngress.url). Defaults to none: no lookup, `storageUri` is used.
     */
    readonly trackingUri?: pulumi.Input<string>;
    /** Basic-auth user for that URL. Defaults to none. */
    readonly username?: pulumi.Input<string>;
    /** Basic-auth password, a Pulumi secret. Defaults to none. */
    readonly password?: pulumi.Input<string>;
    /** Timeout per REST call, in milliseconds. Defaults to `5000`. */
    readonly timeoutMs?: number;
}

export interface ModelServingArgs {
    /** Serving namespace (the InferenceServices, runtime, Secret and ServiceAccount). Required. */
    readonly namespace: pulumi.Input<string>;
    /** Artifact storage and the read-only credentials the storage initializer uses. Required. */
    readonly objectStore: ServingObjectStore;
    /** The models to serve, one InferenceService each. Defaults to none (runtime and identity only). */
    readonly models?: readonly ServedModel[];
    /** Registry lookup of aliases at `pulumi up`. Defaults to none (explicit `storageUri`s). */
    readonly registry?: ServingRegistry;
    /**
     * `namespaced`: a ServingRuntime in the serving namespace (no cluster-scoped write needed);
     * `cluster`: a ClusterServingRuntime. Defaults to `namespaced`.
     */
    readonly runtimeScope?: "namespaced" | "cluster";
    /** MLServer image with `mlserver-mlflow`, pinned. Defaults to `MLSERVER_IMAGE` (seldonio/mlserver:1.7.1-mlflow). */
    readonly runtimeImage?: string;
    /** Requests and limits of the runtime container (models override them). Defaults to `DEFAULTS.resources`. */
    readonly runtimeResources?: Resources;
    /** Size limit of the `/tmp` emptyDir (MLServer metrics, environments, temp files). Defaults to `1Gi`. */
    readonly tmpSizeLimit?: string;
    /** MLServer inference worker processes per pod (MLSERVER_PARALLEL_WORKERS). Defaults to `1`. */
    readonly parallelWorkers?: number;
    /** Install KServe (CRDs and controller) from the pinned OCI charts. Needs cert-manager. Defaults to `false`. */
    readonly installKServe?: boolean;
    /** Namespace of the KServe controller when installed. Defaults to `kserve`. */
    readonly kserveNamespace?: string;
    /** Extra values for the kserve-resources chart, merged over ours; `kserve.controller.deploymentMode` stays `Standard`. Defaults to `{}`. */
    readonly kserveValues?: Record<string, unknown>;
    /**
     * Network isolation of the predictor pods: a NetworkPolicy admitting the listed namespaces (the
     * ingress controller's, Prometheus's) and in-namespace pods labelled `mlflow-platform.io/serving-client`
     * on the HTTP, gRPC and metrics ports, and allowing egress only to the object store and DNS.
     * Defaults to none (no policy is created).
     */
    readonly network?: {
        readonly clientNamespaces: pulumi.Input<string>[];
        /** Egress rule that reaches the object store (ObjectStore.clientEgress). */
        readonly artifactsEgress: pulumi.Input<k8s.types.input.networking.v1.NetworkPolicyEgressRule>;
    };
}

/** In-namespace pods with this label may call the model servers. */
export const SERVING_CLIENT_LABEL = "mlflow-platform.io/serving-client";

/** What an InferenceService ended up serving. */
export interface ServedModelState {
    /**
     * `registry`: the alias was resolved at `pulumi up`; `storageUri`: the explicit fallback; `image`: image
     * mode; `controller`: nothing to resolve at `pulumi up`, the deploy controller creates the InferenceService.
     */
    readonly resolvedBy: "registry" | "storageUri" | "image" | "controller";
    readonly storageUri?: string;
    readonly image?: string;
    /** The registry version, when resolved through the registry. */
    readonly version?: string;
}

/**
 * KServe model serving in Standard mode: a project-owned MLServer runtime (MLflow models, v2 protocol,
 * restricted security context, read-only root), read-only S3 credentials for KServe's storage
 * initializer, and one InferenceService per model whose storageUri is the s3:// location of the
 * version the registry alias points at (resolved at `pulumi up`), or a model image. Optionally
 * installs KServe itself from the pinned charts.
 */
export class ModelServing extends pulumi.ComponentResource {
    /** Name of the ServingRuntime / ClusterServingRuntime every InferenceService pins. */
    public readonly runtimeName: pulumi.Output<string>;
    public readonly serviceAccountName: pulumi.Output<string>;
    private readonly predictorContext: { tmpSizeLimit: string; parallelWorkers: number };
    /** The Secret with the read-only S3 credentials (own, or the one passed in). */
    public readonly s3SecretName: pulumi.Output<string>;
    /** Model name → what it serves. */
    public readonly models: pulumi.Output<Record<string, ServedModelState>>;
    /** Model name → in-cluster v2 inference URL (KServe's `<name>-predictor` Service, port 80). */
    public readonly endpoints: pulumi.Output<Record<string, string>>;
    public readonly runtime: k8s.apiextensions.CustomResource;
    public readonly serviceAccount: k8s.core.v1.ServiceAccount;
    public readonly s3Secret?: k8s.core.v1.Secret;
    /** Model name → InferenceService. */
    public readonly inferenceServices: Record<string, k8s.apiextensions.CustomResource>;
    public readonly kserveCrds?: k8s.helm.v3.Release;
    public readonly kserve?: k8s.helm.v3.Release;

    constructor(name: string, args: ModelServingArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-platform:serving:ModelServing", name, {}, opts);
        const models = args.models ?? DEFAULTS.models;
        const runtimeScope = args.runtimeScope ?? DEFAULTS.runtimeScope;
        const runtimeImage = args.runtimeImage ?? DEFAULTS.runtimeImage;
        const runtimeResources = args.runtimeResources ?? DEFAULTS.resources;
        const tmpSizeLimit = args.tmpSizeLimit ?? DEFAULTS.tmpSizeLimit;
        const parallelWorkers = args.parallelWorkers ?? DEFAULTS.parallelWorkers;
        const installKServe = args.installKServe ?? DEFAULTS.installKServe;
        const kserveNamespace = args.kserveNamespace ?? DEFAULTS.kserveNamespace;
        const timeoutMs = args.registry?.timeoutMs ?? DEFAULTS.registryTimeoutMs;
        validateServingArgs(name, args, { models, runtimeScope, runtimeImage, parallelWorkers, timeoutMs });

        const child = { parent: this };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, name) };

        // KServe itself (optional): CRDs first, then the controller in Standard mode.
        if (installKServe) {
            this.kserveCrds = new k8s.helm.v3.Release(
                `${name}-kserve-crd`,
                {
                    name: "kserve-crd",
                    chart: KSERVE_CHARTS.crd,
                    version: KSERVE_CHARTS.version,
                    namespace: kserveNamespace,
                    ...HELM_RELEASE,
                    timeout: 600,
                },
                child,
            );
            this.kserve = new k8s.helm.v3.Release(
                `${name}-kserve`,
                {
                    // A Helm release, like the other controllers: upstream tests the charts with Helm,
                    // and `atomic` rolls a failed controller/webhook upgrade back as a unit.
                    name: "kserve",
                    chart: KSERVE_CHARTS.resources,
                    version: KSERVE_CHARTS.version,
                    namespace: kserveNamespace,
                    ...HELM_RELEASE,
                    timeout: 900,
                    values: kserveValues(args.kserveValues ?? {}),
                },
                { parent: this, dependsOn: [this.kserveCrds] },
            );
        }
        const afterKServe = this.kserve ? [this.kserve] : [];

        // Read-only S3 credentials for KServe's storage initializer: a Secret plus a ServiceAccount that
        // lists it. KServe reads the s3-* annotations from either; the ServiceAccount always has them so
        // an existing Secret (readOnlySecretName) works as well.
        const s3Annotations = pulumi
            .all([args.objectStore.endpoint, args.objectStore.region])
            .apply(([endpoint, region]) => s3AnnotationsFor(endpoint, region, args.objectStore.verifySsl ?? DEFAULTS.verifySsl));
        if (args.objectStore.accessKeyId !== undefined) {
            this.s3Secret = new k8s.core.v1.Secret(
                `${name}-s3`,
                {
                    metadata: { ...meta, name: `${name}-serving-s3`, annotations: s3Annotations },
                    type: "Opaque",
                    // Wrapped again: the keys stay Pulumi secrets even if a plain string was passed in.
                    stringData: {
                        AWS_ACCESS_KEY_ID: pulumi.secret(args.objectStore.accessKeyId),
                        AWS_SECRET_ACCESS_KEY: pulumi.secret(args.objectStore.secretAccessKey!),
                    },
                },
                child,
            );
            this.s3SecretName = this.s3Secret.metadata.name;
        } else {
            this.s3SecretName = pulumi.output(args.objectStore.readOnlySecretName!);
        }
        this.serviceAccount = new k8s.core.v1.ServiceAccount(
            `${name}-sa`,
            {
                metadata: { ...meta, name: `${name}-serving`, annotations: s3Annotations },
                // Pods never talk to the API server; the Secret is listed for KServe's webhook, not mounted.
                automountServiceAccountToken: false,
                secrets: [{ name: this.s3SecretName }],
            },
            child,
        );
        this.serviceAccountName = this.serviceAccount.metadata.name;

        // The runtime every InferenceService pins.
        this.predictorContext = { tmpSizeLimit, parallelWorkers };
        const runtimeSpec = servingRuntimeSpec({ image: runtimeImage, resources: runtimeResources, tmpSizeLimit, parallelWorkers });
        // A ClusterServingRuntime is cluster-scoped: no namespace.
        const cluster = runtimeScope === "cluster";
        this.runtime = new k8s.apiextensions.CustomResource(
            `${name}-runtime`,
            {
                apiVersion: "serving.kserve.io/v1alpha1",
                kind: cluster ? "ClusterServingRuntime" : "ServingRuntime",
                metadata: cluster ? { labels: meta.labels } : meta,
                spec: runtimeSpec,
            },
            { parent: this, dependsOn: afterKServe },
        );
        this.runtimeName = this.runtime.metadata.name;

        // One InferenceService per model.
        const artifactsDestination = pulumi.interpolate`s3://${args.objectStore.bucket}`;
        const states: Record<string, pulumi.Output<ServedModelState>> = {};
        this.inferenceServices = {};
        for (const m of models) {
            if (controllerCreates(m, args.registry)) {
                // A fresh platform has no version to serve yet: the deploy controller creates this
                // InferenceService from its template when the alias first points at one.
                states[m.name] = pulumi.output({ resolvedBy: "controller" as const });
                continue;
            }
            const state = this.servedState(name, m, args.registry, timeoutMs, artifactsDestination);
            states[m.name] = state;
            const canaryState = m.canary ? canaryStateFor(m.canary) : undefined;
            const spec = pulumi
                .all([state, canaryState, this.runtimeName, this.serviceAccountName])
                .apply(([s, c, runtime, serviceAccountName]) =>
                    inferenceServiceSpec(m, s, c, { runtime, serviceAccountName, tmpSizeLimit, parallelWorkers }),
                );
            this.inferenceServices[m.name] = new k8s.apiextensions.CustomResource(
                `${name}-${m.name}`,
                {
                    apiVersion: "serving.kserve.io/v1beta1",
                    kind: "InferenceService",
                    metadata: {
                        // The name is the URL path and the v2 model name, so it is set, not autonamed.
                        name: m.name,
                        namespace: args.namespace,
                        labels: labels(COMPONENT, m.name),
                        annotations: state.apply((s) => {
                            const a = inferenceServiceAnnotations(m, s);
                            if (!m.followedByController) return a;
                            // The controller owns the version annotation; Pulumi must not hold it, or the
                            // next `pulumi up` would conflict with (or reset) the controller's value.
                            const { [VERSION_ANNOTATION]: _owned, ...rest } = a;
                            return { ...rest, "mlflow-platform/storage-uri-owner": "deploy-controller" };
                        }),
                    },
                    spec,
                },
                {
                    parent: this,
                    dependsOn: afterKServe,
                    // Server-side apply: with the field ignored and owned by the controller's field manager,
                    // the provider drops it from Pulumi's apply, so Pulumi never conflicts with or resets it.
                    ...(m.followedByController ? { ignoreChanges: [...CONTROLLER_OWNED_FIELDS] } : {}),
                },
            );
            if (m.canary) warnOnCanarySplit(name, m, this);
        }
        this.models = pulumi.output(states);
        this.endpoints = pulumi.output(args.namespace).apply((ns) =>
            Object.fromEntries(models.map((m) => [m.name, `http://${m.name}-predictor.${ns}.svc.cluster.local/v2/models/${m.name}/infer`])),
        );

        if (args.network) {
            new k8s.networking.v1.NetworkPolicy(
                `${name}-predictors-netpol`,
                {
                    metadata: { name: `${name}-predictors`, namespace: args.namespace, labels: labels(COMPONENT, name) },
                    spec: {
                        // Every predictor pod KServe creates carries this label.
                        podSelector: { matchExpressions: [{ key: "serving.kserve.io/inferenceservice", operator: "Exists" }] },
                        policyTypes: ["Ingress", "Egress"],
                        ingress: [
                            {
                                from: [{ podSelector: { matchLabels: { [SERVING_CLIENT_LABEL]: "true" } } }, ...fromNamespaces(args.network.clientNamespaces)],
                                ports: containerPorts.map((p) => ({ protocol: "TCP", port: p.containerPort })),
                            },
                        ],
                        egress: [dnsEgress(), args.network.artifactsEgress],
                    },
                },
                { parent: this },
            );
        }

        this.registerOutputs({
            runtimeName: this.runtimeName,
            serviceAccountName: this.serviceAccountName,
            s3SecretName: this.s3SecretName,
            models: this.models,
            endpoints: this.endpoints,
        });
    }

    /**
     * The InferenceService the deploy controller creates for `m` when it is missing: what this component
     * declares (runtime, service account, pod settings), minus the fields the controller owns.
     */
    controllerTemplate(m: ServedModel): pulumi.Output<Record<string, unknown>> {
        return pulumi
            .all([this.runtimeName, this.serviceAccountName])
            .apply(([runtime, serviceAccountName]) => inferenceServiceTemplate(m, { runtime, serviceAccountName, ...this.predictorContext }));
    }

    /**
     * What a model serves: its image, or the storageUri of the version its alias points at (looked up
     * at `pulumi up` when a tracking URL is configured), or its explicit storageUri. The lookup runs in
     * an async function whose Promise becomes an Output; no resource is created inside it.
     */
    private servedState(
        name: string,
        m: ServedModel,
        registry: ServingRegistry | undefined,
        timeoutMs: number,
        artifactsDestination: pulumi.Output<string>,
    ): pulumi.Output<ServedModelState> {
        if (m.image !== undefined) {
            return pulumi.output(m.image).apply((image) => ({ resolvedBy: "image" as const, image }));
        }
        const alias = m.alias ?? DEFAULTS.alias;
        // Secret credentials taint the result; a storage location is not a secret, so unwrap it.
        return pulumi.unsecret(
            pulumi
                .all([registry?.trackingUri, registry?.username, registry?.password, artifactsDestination, m.storageUri])
                .apply(([trackingUri, username, password, destination, storageUri]) =>
                    resolveServedModel({
                        component: name,
                        model: m.name,
                        registeredModel: m.registeredModel,
                        alias,
                        registry: trackingUri ? { trackingUri, username, password, timeoutMs } : undefined,
                        artifactsDestination: destination,
                        storageUri,
                        warn: (msg) => pulumi.log.warn(msg, this),
                    }),
                ),
        );
    }
}

/**
 * A followed model with neither a storageUri nor a registry to resolve its alias at `pulumi up` is not
 * declared by Pulumi: the deploy controller creates it (from `inferenceServiceTemplate`) and owns it whole.
 */
export function controllerCreates(m: ServedModel, registry: ServingRegistry | undefined): boolean {
    return m.followedByController === true && m.image === undefined && m.storageUri === undefined && registry?.trackingUri === undefined;
}

export interface ResolveServedModelParams {
    readonly component: string;
    readonly model: string;
    readonly registeredModel: string;
    readonly alias: string;
    /** Tracking server to ask; undefined skips the lookup. */
    readonly registry?: { trackingUri: string; username?: string; password?: string; timeoutMs: number };
    /** `s3://<bucket>[/<prefix>]`: where the tracking server stores proxied artifacts. */
    readonly artifactsDestination: string;
    /** Explicit fallback. */
    readonly storageUri?: string;
    readonly warn: (message: string) => void;
}

/**
 * Resolves one model's storageUri: through the registry when a tracking URL is given (warning and
 * falling back to the explicit storageUri if that fails), else the explicit storageUri. Rejects with
 * an Error naming the model and what to set when neither yields a location.
 */
export async function resolveServedModel(p: ResolveServedModelParams): Promise<ServedModelState> {
    const ref = `${p.registeredModel}@${p.alias}`;
    const fallback = p.storageUri !== undefined ? checkedStorageUri(p.component, `model "${p.model}"`, p.storageUri) : undefined;
    if (p.registry) {
        let resolved: ResolvedModel | undefined;
        let failure: string | undefined;
        try {
            resolved = await resolveAlias(p.registry, p.registeredModel, p.alias, p.artifactsDestination);
        } catch (e) {
            failure = (e as Error).message;
        }
        if (resolved) return { resolvedBy: "registry", storageUri: resolved.storageUri, version: resolved.version };
        if (fallback) {
            p.warn(`ModelServing ${p.component}: model "${p.model}": could not resolve ${ref} (${failure}); serving the configured storageUri ${fallback}`);
            return { resolvedBy: "storageUri", storageUri: fallback };
        }
        throw new Error(
            `ModelServing ${p.component}: model "${p.model}": could not resolve ${ref} through the MLflow registry (${failure}) ` +
                `and no storageUri is set. Make the tracking server reachable from where pulumi runs (registry.trackingUri and credentials), ` +
                `or set storageUri for "${p.model}" to the s3:// location of the model version.`,
        );
    }
    if (fallback) return { resolvedBy: "storageUri", storageUri: fallback };
    throw new Error(
        `ModelServing ${p.component}: model "${p.model}" (${ref}) has no storageUri and no MLflow tracking URL to resolve the alias: ` +
            `set registry.trackingUri (reachable from where pulumi runs) or storageUri for "${p.model}".`,
    );
}

function checkedStorageUri(component: string, what: string, uri: string): string {
    try {
        const { bucket, key } = parseS3Uri(uri);
        if (!key) throw new Error("it names a bucket, not a model directory");
        return `s3://${bucket}/${key}`;
    } catch (e) {
        throw new Error(`ModelServing ${component}: ${what}: storageUri "${uri}" is invalid: ${(e as Error).message}`);
    }
}

function canaryStateFor(c: CanaryModel): pulumi.Output<ServedModelState> {
    return c.image !== undefined
        ? pulumi.output(c.image).apply((image) => ({ resolvedBy: "image" as const, image }))
        : pulumi.output(c.storageUri!).apply((storageUri) => ({ resolvedBy: "storageUri" as const, storageUri }));
}

/** KServe's s3-* annotations (host:port endpoint, https and TLS verification flags, region). */
export function s3AnnotationsFor(endpoint: string, region: string, verifySsl: boolean): Record<string, string> {
    let url: URL;
    try {
        url = new URL(endpoint);
    } catch {
        throw new Error(`S3 endpoint "${endpoint}" is not a URL such as http://minio.mlflow.svc:9000`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`S3 endpoint "${endpoint}" must be http:// or https://`);
    const https = url.protocol === "https:";
    return {
        "serving.kserve.io/s3-endpoint": url.host,
        "serving.kserve.io/s3-usehttps": https ? "1" : "0",
        "serving.kserve.io/s3-verifyssl": https && verifySsl ? "1" : "0",
        "serving.kserve.io/s3-region": region,
    };
}

/** Values of the kserve-resources chart: the controller defaults to Standard mode. */
export function kserveValues(extra: Record<string, unknown>): Record<string, unknown> {
    const mode = (extra as any)?.kserve?.controller?.deploymentMode;
    if (mode !== undefined && mode !== DEPLOYMENT_MODE) {
        throw new Error(`kserveValues: kserve.controller.deploymentMode must stay ${DEPLOYMENT_MODE}, not ${JSON.stringify(mode)}`);
    }
    return deepMerge({ kserve: { controller: { deploymentMode: DEPLOYMENT_MODE } } }, extra);
}

/** Env of an MLServer container serving one MLflow model from `modelDir`. */
export function mlserverEnv(modelName: string, modelDir: string, parallelWorkers: number): { name: string; value: string }[] {
    return [
        { name: "MLSERVER_MODEL_IMPLEMENTATION", value: "mlserver_mlflow.MLflowRuntime" },
        { name: "MLSERVER_MODEL_NAME", value: modelName },
        { name: "MLSERVER_MODEL_URI", value: modelDir },
        { name: "MLSERVER_HTTP_PORT", value: String(HTTP_PORT) },
        { name: "MLSERVER_GRPC_PORT", value: String(GRPC_PORT) },
        { name: "MLSERVER_METRICS_PORT", value: String(METRICS_PORT) },
        { name: "MLSERVER_PARALLEL_WORKERS", value: String(parallelWorkers) },
        // Everything MLServer and MLflow write goes to the /tmp emptyDir, so the root stays read-only.
        { name: "MLSERVER_METRICS_DIR", value: "/tmp/mlserver/metrics" },
        { name: "MLSERVER_ENVIRONMENTS_DIR", value: "/tmp/mlserver/envs" },
        { name: "HOME", value: "/tmp" },
        { name: "NUMBA_CACHE_DIR", value: "/tmp/.cache/numba" },
        { name: "MLFLOW_DISABLE_TELEMETRY", value: "true" },
        { name: "DO_NOT_TRACK", value: "true" },
        { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
        { name: "PYTHONUNBUFFERED", value: "1" },
    ];
}

/** The MLServer container's ports; the first is the one KServe's Service (port 80) targets. */
export const MLSERVER_PORTS = {
    http: { name: "http", containerPort: HTTP_PORT, protocol: "TCP" },
    grpc: { name: "grpc", containerPort: GRPC_PORT, protocol: "TCP" },
    metrics: { name: "metrics", containerPort: METRICS_PORT, protocol: "TCP" },
} as const;
const containerPorts = Object.values(MLSERVER_PORTS);

const probes = {
    startupProbe: { httpGet: { path: "/v2/health/live", port: HTTP_PORT }, periodSeconds: 5, failureThreshold: 120 },
    readinessProbe: { httpGet: { path: "/v2/health/ready", port: HTTP_PORT }, periodSeconds: 10, timeoutSeconds: 5 },
    livenessProbe: { httpGet: { path: "/v2/health/live", port: HTTP_PORT }, periodSeconds: 30, timeoutSeconds: 10, failureThreshold: 5 },
};

/**
 * The MLServer container and its /tmp volume, for the ServingRuntime and for image-mode predictors:
 * `mlserver start <modelDir>` run directly, restricted, read-only root, ports, probes.
 */
function mlserverPod(p: { image: pulumi.Input<string> | undefined; modelDir: string; env: { name: string; value: string }[]; resources: unknown; tmpSizeLimit: string }) {
    return {
        containers: [
            {
                name: KSERVE_CONTAINER,
                image: p.image,
                imagePullPolicy: IMAGE_PULL_POLICY,
                command: ["mlserver", "start", p.modelDir],
                workingDir: "/tmp",
                env: p.env,
                ports: containerPorts,
                ...probes,
                resources: p.resources,
                securityContext: containerSecurityContext(),
                volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            },
        ],
        volumes: [{ name: "tmp", emptyDir: { sizeLimit: p.tmpSizeLimit } }],
    };
}

/**
 * The ServingRuntime spec: MLflow formats 1–3 over the v2 protocol, MLServer started directly (the
 * image's CMD sources scripts from /opt/mlserver, which only UID 1000 / GID 0 can enter), restricted
 * security context with a read-only root and a /tmp emptyDir.
 */
export function servingRuntimeSpec(p: { image: string; resources: Resources; tmpSizeLimit: string; parallelWorkers: number }) {
    return {
        annotations: { "prometheus.kserve.io/port": String(METRICS_PORT), "prometheus.kserve.io/path": "/metrics" },
        supportedModelFormats: ["1", "2", "3"].map((version) => ({ name: "mlflow", version, autoSelect: true, priority: 1 })),
        protocolVersions: ["v2"],
        // {{.Name}} is replaced by KServe with the InferenceService name.
        ...mlserverPod({ image: p.image, modelDir: MODEL_MOUNT, env: mlserverEnv("{{.Name}}", MODEL_MOUNT, p.parallelWorkers), resources: p.resources, tmpSizeLimit: p.tmpSizeLimit }),
    };
}

/**
 * An InferenceService template for the controller to create a missing one exactly as ModelServing
 * declares it (runtime, service account, replicas, resources), minus what the controller owns.
 */
export function inferenceServiceTemplate(
    m: ServedModel,
    ctx: { runtime: string; serviceAccountName: string; tmpSizeLimit: string; parallelWorkers: number },
): Record<string, unknown> {
    const spec = inferenceServiceSpec(m, { resolvedBy: "storageUri" }, undefined, ctx);
    delete spec.predictor?.model?.storageUri;
    const annotations: Record<string, string> = { ...inferenceServiceAnnotations(m, { resolvedBy: "storageUri" }), "mlflow-platform/resolved-by": "deploy-controller" };
    delete annotations[VERSION_ANNOTATION];
    return {
        metadata: { labels: { ...labels(COMPONENT, m.name), "app.kubernetes.io/managed-by": FIELD_MANAGER }, annotations: { [DEPLOYMENT_MODE_ANNOTATION]: DEPLOYMENT_MODE, ...annotations } },
        spec,
    };
}

/** Canary replica counts as KServe v0.20 computes them in Standard mode, and the resulting traffic share. */
export function canarySplit(stableMinReplicas: number, trafficPercent: number) {
    const canaryReplicas = Math.ceil((stableMinReplicas * trafficPercent) / 100);
    const stableReplicas = Math.max(stableMinReplicas - canaryReplicas, 1);
    return { canaryReplicas, stableReplicas, effectivePercent: Math.round((100 * canaryReplicas) / (canaryReplicas + stableReplicas)) };
}

function warnOnCanarySplit(name: string, m: ServedModel, resource: pulumi.Resource): void {
    const replicas = m.replicas ?? DEFAULTS.replicas;
    const split = canarySplit(replicas.min, m.canary!.trafficPercent);
    if (Math.abs(split.effectivePercent - m.canary!.trafficPercent) > 5) {
        pulumi.log.warn(
            `ModelServing ${name}: model "${m.name}": KServe splits canary traffic by replicas; with replicas.min ${replicas.min} the ` +
                `canary gets ${split.canaryReplicas} of ${split.canaryReplicas + split.stableReplicas} pods (~${split.effectivePercent}%, ` +
                `not ${m.canary!.trafficPercent}%). Raise replicas.min for a finer split.`,
            resource,
        );
    }
}

interface PredictorContext {
    runtime: string;
    serviceAccountName: string;
    tmpSizeLimit: string;
    parallelWorkers: number;
}

/** A predictor (stable or canary): the pod-level settings plus the model or the custom container. */
export function predictorSpec(m: ServedModel, state: ServedModelState, ctx: PredictorContext): Record<string, any> {
    const resources = m.resources ?? DEFAULTS.resources;
    const pod = {
        // Capability label: the object store's NetworkPolicy admits artifact clients (the storage initializer runs in this pod).
        labels: { [CLIENT_OF.artifacts]: "true" },
        serviceAccountName: ctx.serviceAccountName,
        automountServiceAccountToken: false,
        securityContext: podSecurityContext(),
    };
    if (state.resolvedBy === "image") {
        return {
            ...pod,
            // The command is explicit, so any image with MLServer and the model in /opt/ml/model works,
            // whatever its entrypoint; PROTOCOL tells KServe a custom container speaks v2.
            ...mlserverPod({
                image: state.image,
                modelDir: IMAGE_MODEL_DIR,
                env: [{ name: "PROTOCOL", value: "v2" }, ...mlserverEnv(m.name, IMAGE_MODEL_DIR, ctx.parallelWorkers)],
                resources,
                tmpSizeLimit: ctx.tmpSizeLimit,
            }),
        };
    }
    return {
        ...pod,
        model: {
            modelFormat: { name: "mlflow" },
            protocolVersion: "v2",
            runtime: ctx.runtime,
            storageUri: state.storageUri,
            resources,
        },
    };
}

/** The InferenceService spec: the stable predictor, and the canary as `spec.canary` (Standard mode, KServe ≥ v0.20). */
export function inferenceServiceSpec(
    m: ServedModel,
    state: ServedModelState,
    canary: ServedModelState | undefined,
    ctx: PredictorContext,
): Record<string, any> {
    const replicas = m.replicas ?? DEFAULTS.replicas;
    const autoscale = replicas.max > replicas.min;
    const predictor = {
        ...predictorSpec(m, state, ctx),
        minReplicas: replicas.min,
        maxReplicas: replicas.max,
        ...(autoscale ? { scaleMetric: "cpu", scaleTarget: m.targetCpuPercent ?? DEFAULTS.targetCpuPercent } : {}),
        // Surge only: a new model version is ready before an old pod goes.
        deploymentStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
    };
    if (!canary) return { predictor };
    // KServe sizes the canary itself (ceil(stable min × percent / 100)) and rejects autoscaling fields on it.
    // It merges the canary predictor over the stable one; the CRD requires `model.name` on a canary,
    // and naming it like the runtime's container keeps that merge (and the storage initializer, which
    // looks for `kserve-container`) working.
    const canaryPredictor = predictorSpec(m, canary, ctx);
    if (canaryPredictor.model) canaryPredictor.model = { name: KSERVE_CONTAINER, ...canaryPredictor.model };
    return {
        predictor,
        canary: [{ trafficPercent: m.canary!.trafficPercent, predictor: { name: "canary", ...canaryPredictor } }],
    };
}

/** Deployment mode, plus where the served model came from (for people reading the cluster). */
export function inferenceServiceAnnotations(m: ServedModel, state: ServedModelState): Record<string, string> {
    return {
        [DEPLOYMENT_MODE_ANNOTATION]: DEPLOYMENT_MODE,
        "mlflow-platform/registered-model": m.registeredModel,
        "mlflow-platform/alias": m.alias ?? DEFAULTS.alias,
        "mlflow-platform/resolved-by": state.resolvedBy,
        ...(state.version !== undefined ? { [VERSION_ANNOTATION]: state.version } : {}),
    };
}

const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const MAX_MODEL_NAME = 45;

/** Every impossible combination, as an Error that names the model and the field. */
export function validateServingArgs(
    name: string,
    args: ModelServingArgs,
    d: { models: readonly ServedModel[]; runtimeScope: string; runtimeImage: string; parallelWorkers: number; timeoutMs: number },
): void {
    const fail = (msg: string): never => {
        throw new Error(`ModelServing ${name}: ${msg}`);
    };
    if (!["namespaced", "cluster"].includes(d.runtimeScope)) fail(`runtimeScope must be "namespaced" or "cluster", not "${d.runtimeScope}"`);
    if (!isPinnedImage(d.runtimeImage)) {
        fail(`runtimeImage "${d.runtimeImage}" must pin a tag (not latest) or a sha256 digest`);
    }
    if (!Number.isInteger(d.parallelWorkers) || d.parallelWorkers < 1) fail(`parallelWorkers must be an integer ≥ 1, not ${d.parallelWorkers}`);
    if (!Number.isInteger(d.timeoutMs) || d.timeoutMs < 100 || d.timeoutMs > 60000) fail(`registry.timeoutMs must be 100–60000, not ${d.timeoutMs}`);

    const os = args.objectStore;
    const hasPair = os.accessKeyId !== undefined || os.secretAccessKey !== undefined;
    if (hasPair && (os.accessKeyId === undefined || os.secretAccessKey === undefined)) {
        fail("objectStore needs both accessKeyId and secretAccessKey");
    }
    if (hasPair && os.readOnlySecretName !== undefined) fail("objectStore takes either accessKeyId/secretAccessKey or readOnlySecretName, not both");
    if (!hasPair && os.readOnlySecretName === undefined) fail("objectStore needs the read-only credentials: accessKeyId/secretAccessKey or readOnlySecretName");

    const seen = new Set<string>();
    for (const m of d.models) {
        const model = `model "${m.name}"`;
        if (typeof m.name !== "string" || !DNS_LABEL.test(m.name) || m.name.length > MAX_MODEL_NAME) {
            fail(
                `${model}: the name must be a DNS label starting with a letter (lowercase letters, digits, '-') of at most ${MAX_MODEL_NAME} characters; ` +
                    `it becomes the InferenceService name`,
            );
        }
        if (seen.has(m.name)) fail(`${model} is listed twice; model names must be unique`);
        seen.add(m.name);
        if (!m.registeredModel || m.registeredModel.trim() !== m.registeredModel) fail(`${model}: registeredModel must be a non-empty name`);
        const alias = m.alias ?? DEFAULTS.alias;
        if (!isMlflowAlias(alias)) {
            fail(`${model}: alias "${alias}" is not a valid MLflow alias (letters, digits, '_' and '-'; not "latest" or "v<N>")`);
        }
        if (m.image !== undefined && m.storageUri !== undefined) fail(`${model}: set either image (image mode) or storageUri, not both`);
        if (m.followedByController && m.image !== undefined) fail(`${model}: followedByController applies to storageUri models; in image mode the controller follows a Deployment`);
        if (typeof m.storageUri === "string") checkedStorageUri(name, model, m.storageUri);
        if (m.image === undefined && m.storageUri === undefined && args.registry?.trackingUri === undefined && !m.followedByController) {
            fail(
                `${model} (${m.registeredModel}@${alias}) has no storageUri and no MLflow tracking URL to resolve the alias: ` +
                    `set registry.trackingUri (reachable from where pulumi runs) or storageUri for "${m.name}"`,
            );
        }
        const r = m.replicas ?? DEFAULTS.replicas;
        if (!Number.isInteger(r.min) || !Number.isInteger(r.max) || r.min < 1 || r.max < r.min) {
            fail(`${model}: replicas must be integers with 1 ≤ min ≤ max, not ${JSON.stringify(r)}`);
        }
        const cpu = m.targetCpuPercent ?? DEFAULTS.targetCpuPercent;
        if (!Number.isInteger(cpu) || cpu < 1 || cpu > 100) fail(`${model}: targetCpuPercent must be an integer 1–100, not ${cpu}`);
        if (m.canary) {
            const c = m.canary;
            if (!Number.isInteger(c.trafficPercent) || c.trafficPercent < 1 || c.trafficPercent > 99) {
                fail(`${model}: canary.trafficPercent must be an integer 1–99, not ${c.trafficPercent}`);
            }
            if ((c.image === undefined) === (c.storageUri === undefined)) fail(`${model}: canary needs exactly one of storageUri and image`);
            if ((c.image !== undefined) !== (m.image !== undefined)) {
                fail(`${model}: canary must use the same mode as the stable predictor (image with image, storageUri with storageUri)`);
            }
            if (typeof c.storageUri === "string") checkedStorageUri(name, `${model} canary`, c.storageUri);
        }
    }
}
