// KServe model serving in Standard mode: the platform's MLServer runtime, read-only S3 access for the
// storage initializer, and one InferenceService per configured model.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { VERSION_ANNOTATION } from "../../shared/mlflow";
import { MLSERVER_PORTS } from "../../shared/ports";
import { dnsEgress, fromNamespaces, HELM_RELEASE, labels, renamedFrom } from "../kube";
import {
    APP,
    canarySplit,
    COMPONENT,
    CONTROLLER_OWNED_FIELDS,
    inferenceServiceAnnotations,
    inferenceServiceSpec,
    inferenceServiceTemplate,
    predictorService,
    ServedModelState,
    v2ModelPath,
} from "./inferenceService";
export { predictorService, v2ModelPath } from "./inferenceService";
import { KSERVE_CHARTS, KSERVE_VALUES, s3AnnotationsFor } from "./kserve";
import { REGISTRY_TIMEOUT_MS, resolveServedModel } from "./resolve";
import { servingRuntimeSpec } from "./runtime";
import type { ServedModelConfig, ServingConfig } from "./schema";

/** In-namespace pods with this label may call the model servers. */
export const SERVING_CLIENT_LABEL = "mlflow-platform.io/serving-client";

export interface ModelServingArgs {
    /** Serving namespace (the InferenceServices, runtime, Secret and ServiceAccount). */
    readonly namespace: pulumi.Input<string>;
    readonly config: ServingConfig;
    /**
     * The deploy controller follows every model's alias (deployController.enabled). Pulumi then sets
     * `storageUri` only when it creates an InferenceService and ignores it afterwards, and never writes
     * the version annotation: the controller owns both through server-side apply. A model with nothing
     * to resolve at `pulumi up` is not declared at all: the controller creates it from its template.
     */
    readonly followedByController: boolean;
    /** Image mode: model name → the image ModelImage built for it. */
    readonly images?: Readonly<Record<string, pulumi.Input<string>>>;
    /** Artifact storage and the read-only credentials the storage initializer uses (ObjectStore outputs). */
    readonly objectStore: {
        readonly endpoint: pulumi.Input<string>;
        /** The tracking server's `--artifacts-destination s3://<bucket>`. */
        readonly bucket: pulumi.Input<string>;
        readonly region: pulumi.Input<string>;
        /** Read-only keys, as Pulumi secrets: ModelServing writes its own annotated Secret (KServe reads the s3-* annotations from it). */
        readonly accessKeyId: pulumi.Input<string>;
        readonly secretAccessKey: pulumi.Input<string>;
    };
    /** Where `pulumi up` resolves aliases (the ingress URL, as its first user); none when `config.resolveAliases` is off. */
    readonly registry?: { readonly trackingUri: pulumi.Input<string>; readonly username: pulumi.Input<string>; readonly password: pulumi.Input<string> };
    /**
     * Who may call the predictors (the listed namespaces and in-namespace pods labelled
     * `mlflow-platform.io/serving-client`), and the egress rule to the object store.
     */
    readonly network: {
        readonly clientNamespaces: pulumi.Input<string>[];
        readonly artifactsEgress: pulumi.Input<k8s.types.input.networking.v1.NetworkPolicyEgressRule>;
    };
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
    /** The Secret with the read-only S3 credentials. */
    public readonly s3SecretName: pulumi.Output<string>;
    /** Model name → what it serves. */
    public readonly models: pulumi.Output<Record<string, ServedModelState>>;
    /** Model name → in-cluster v2 inference URL (KServe's `<name>-predictor` Service, port 80). */
    public readonly endpoints: pulumi.Output<Record<string, string>>;
    public readonly runtime: k8s.apiextensions.CustomResource;
    public readonly serviceAccount: k8s.core.v1.ServiceAccount;
    public readonly s3Secret: k8s.core.v1.Secret;
    /** Model name → InferenceService (models the controller creates are not here). */
    public readonly inferenceServices: Record<string, k8s.apiextensions.CustomResource>;
    public readonly kserveCrds?: k8s.helm.v3.Release;
    public readonly kserve?: k8s.helm.v3.Release;

    constructor(name: string, args: ModelServingArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:ModelServing`, name, {}, renamedFrom(opts, "mlflow-platform:serving:ModelServing"));
        const c = args.config;
        const child = { parent: this };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, APP, name) };

        // KServe itself (optional): CRDs first, then the controller in Standard mode.
        if (c.installKServe) {
            this.kserveCrds = new k8s.helm.v3.Release(
                `${name}-kserve-crd`,
                {
                    name: "kserve-crd",
                    chart: KSERVE_CHARTS.crd,
                    version: KSERVE_CHARTS.version,
                    namespace: KSERVE_CHARTS.namespace,
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
                    namespace: KSERVE_CHARTS.namespace,
                    ...HELM_RELEASE,
                    timeout: 900,
                    values: KSERVE_VALUES,
                },
                { parent: this, dependsOn: [this.kserveCrds] },
            );
        }
        const afterKServe = this.kserve ? [this.kserve] : [];

        // Read-only S3 credentials for KServe's storage initializer: a Secret plus a ServiceAccount that
        // lists it. KServe reads the s3-* annotations from the Secret; the ServiceAccount carries them too.
        const s3Annotations = pulumi
            .all([args.objectStore.endpoint, args.objectStore.region])
            .apply(([endpoint, region]) => s3AnnotationsFor(endpoint, region));
        this.s3Secret = new k8s.core.v1.Secret(
            `${name}-s3`,
            {
                metadata: { ...meta, name: `${name}-serving-s3`, annotations: s3Annotations },
                type: "Opaque",
                // Wrapped again: the keys stay Pulumi secrets even if a plain string was passed in.
                stringData: {
                    AWS_ACCESS_KEY_ID: pulumi.secret(args.objectStore.accessKeyId),
                    AWS_SECRET_ACCESS_KEY: pulumi.secret(args.objectStore.secretAccessKey),
                },
            },
            child,
        );
        this.s3SecretName = this.s3Secret.metadata.name;
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

        // The runtime every InferenceService pins. A ClusterServingRuntime is cluster-scoped: no namespace.
        const cluster = c.runtimeScope === "cluster";
        this.runtime = new k8s.apiextensions.CustomResource(
            `${name}-runtime`,
            {
                apiVersion: "serving.kserve.io/v1alpha1",
                kind: cluster ? "ClusterServingRuntime" : "ServingRuntime",
                metadata: cluster ? { labels: meta.labels } : meta,
                spec: servingRuntimeSpec(c.runtimeImage),
            },
            { parent: this, dependsOn: afterKServe },
        );
        this.runtimeName = this.runtime.metadata.name;

        // One InferenceService per model.
        const artifactsDestination = pulumi.interpolate`s3://${args.objectStore.bucket}`;
        const states: Record<string, pulumi.Output<ServedModelState>> = {};
        this.inferenceServices = {};
        for (const m of c.models) {
            const image = args.images?.[m.name];
            if (args.followedByController && image === undefined && m.storageUri === undefined && args.registry === undefined) {
                // A fresh platform has no version to serve yet: the deploy controller creates this
                // InferenceService from its template when the alias first points at one.
                states[m.name] = pulumi.output({ resolvedBy: "controller" as const });
                continue;
            }
            const state = this.servedState(name, m, image, args.registry, artifactsDestination);
            states[m.name] = state;
            const canaryState = m.canary ? pulumi.output({ resolvedBy: "storageUri" as const, storageUri: m.canary.storageUri }) : undefined;
            const spec = pulumi
                .all([state, canaryState, this.runtimeName, this.serviceAccountName])
                .apply(([s, cs, runtime, serviceAccountName]) => inferenceServiceSpec(m, s, cs, { runtime, serviceAccountName }));
            this.inferenceServices[m.name] = new k8s.apiextensions.CustomResource(
                `${name}-${m.name}`,
                {
                    apiVersion: "serving.kserve.io/v1beta1",
                    kind: "InferenceService",
                    metadata: {
                        // The name is the URL path and the v2 model name, so it is set, not autonamed.
                        name: m.name,
                        namespace: args.namespace,
                        labels: labels(COMPONENT, APP, m.name),
                        annotations: state.apply((s) => {
                            const a = inferenceServiceAnnotations(m, s);
                            if (!args.followedByController) return a;
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
                    ...(args.followedByController ? { ignoreChanges: [...CONTROLLER_OWNED_FIELDS] } : {}),
                },
            );
            if (m.canary) warnOnCanarySplit(name, m, this);
        }
        this.models = pulumi.output(states);
        this.endpoints = pulumi.output(args.namespace).apply((ns) =>
            Object.fromEntries(c.models.map((m) => [m.name, `http://${predictorService(m.name).serviceName}.${ns}.svc.cluster.local${v2ModelPath(m.name)}/infer`])),
        );

        new k8s.networking.v1.NetworkPolicy(
            `${name}-predictors-netpol`,
            {
                metadata: { name: `${name}-predictors`, namespace: args.namespace, labels: labels(COMPONENT, APP, name) },
                spec: {
                    // Every predictor pod KServe creates carries this label.
                    podSelector: { matchExpressions: [{ key: "serving.kserve.io/inferenceservice", operator: "Exists" }] },
                    policyTypes: ["Ingress", "Egress"],
                    ingress: [
                        {
                            from: [{ podSelector: { matchLabels: { [SERVING_CLIENT_LABEL]: "true" } } }, ...fromNamespaces(args.network.clientNamespaces)],
                            ports: Object.values(MLSERVER_PORTS).map((p) => ({ protocol: "TCP", port: p.containerPort })),
                        },
                    ],
                    egress: [dnsEgress(), args.network.artifactsEgress],
                },
            },
            { parent: this },
        );

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
    controllerTemplate(m: ServedModelConfig): pulumi.Output<Record<string, unknown>> {
        return pulumi
            .all([this.runtimeName, this.serviceAccountName])
            .apply(([runtime, serviceAccountName]) => inferenceServiceTemplate(m, { runtime, serviceAccountName }));
    }

    /**
     * What a model serves: its image, or the storageUri of the version its alias points at (looked up
     * at `pulumi up` when a registry is given), or its explicit storageUri. The lookup runs in an async
     * function whose Promise becomes an Output; no resource is created inside it.
     */
    private servedState(
        name: string,
        m: ServedModelConfig,
        image: pulumi.Input<string> | undefined,
        registry: ModelServingArgs["registry"],
        artifactsDestination: pulumi.Output<string>,
    ): pulumi.Output<ServedModelState> {
        if (image !== undefined) return pulumi.output(image).apply((i) => ({ resolvedBy: "image" as const, image: i }));
        // Secret credentials taint the result; a storage location is not a secret, so unwrap it.
        return pulumi.unsecret(
            pulumi
                .all([registry?.trackingUri, registry?.username, registry?.password, artifactsDestination])
                .apply(([trackingUri, username, password, destination]) =>
                    resolveServedModel({
                        component: name,
                        model: m.name,
                        registeredModel: m.registeredModel,
                        alias: m.alias,
                        registry: trackingUri ? { trackingUri, username, password, timeoutMs: REGISTRY_TIMEOUT_MS } : undefined,
                        artifactsDestination: destination,
                        storageUri: m.storageUri,
                        warn: (msg) => pulumi.log.warn(msg, this),
                    }),
                ),
        );
    }
}

function warnOnCanarySplit(name: string, m: ServedModelConfig, resource: pulumi.Resource): void {
    const split = canarySplit(m.replicas.min, m.canary!.trafficPercent);
    if (Math.abs(split.effectivePercent - m.canary!.trafficPercent) > 5) {
        pulumi.log.warn(
            `ModelServing ${name}: model "${m.name}": KServe splits canary traffic by replicas; with replicas.min ${m.replicas.min} the ` +
                `canary gets ${split.canaryReplicas} of ${split.canaryReplicas + split.stableReplicas} pods (~${split.effectivePercent}%, ` +
                `not ${m.canary!.trafficPercent}%). Raise replicas.min for a finer split.`,
            resource,
        );
    }
}
