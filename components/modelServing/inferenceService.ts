// The InferenceService of one served model, as pure functions of its config and of what it serves:
// the predictor (a model on the platform's runtime, or an image-mode custom container), the canary,
// the annotations, and the template the deploy controller creates a missing one from.
import { FIELD_MANAGER, VERSION_ANNOTATION } from "../../shared/mlflow";
import { CLIENT_OF, labels, podSecurityContext } from "../kube";
import { IMAGE_MODEL_DIR, KSERVE_CONTAINER, MLSERVER_POD, mlserverEnv, mlserverPod } from "./runtime";
import type { ServedModelConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the name of what it serves. */
export const COMPONENT = "modelServing";
export const APP = "model-serving";

/** Standard mode (formerly RawDeployment): Deployment + Service + HPA, no Knative. */
export const DEPLOYMENT_MODE = "Standard";
export const DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode";
/** Target CPU utilisation of KServe's autoscaler when replicas.max > replicas.min, percent. */
export const TARGET_CPU_PERCENT = 70;

/** The Service KServe (Standard mode) makes for an InferenceService's predictor, with MLServer's v2 API behind it. */
export function predictorService(isvc: string): { serviceName: string; servicePort: number } {
    return { serviceName: `${isvc}-predictor`, servicePort: 80 };
}

/** Where the v2 protocol serves a model: every path of it starts here (`…/infer`, `…/ready`). */
export function v2ModelPath(model: string): string {
    return `/v2/models/${model}`;
}

/** InferenceService fields the deploy controller owns on followed models; Pulumi ignores them after creation. */
export const CONTROLLER_OWNED_FIELDS = ["spec.predictor.model.storageUri"] as const;

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

/** Names the predictors refer to: the runtime they pin and the ServiceAccount with the S3 credentials. */
export interface PredictorContext {
    readonly runtime: string;
    readonly serviceAccountName: string;
}

/** A predictor (stable or canary): the pod-level settings plus the model or the custom container. */
export function predictorSpec(m: ServedModelConfig, state: ServedModelState, ctx: PredictorContext): Record<string, any> {
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
            ...mlserverPod({ image: state.image, modelDir: IMAGE_MODEL_DIR, env: [{ name: "PROTOCOL", value: "v2" }, ...mlserverEnv(m.name, IMAGE_MODEL_DIR)] }),
        };
    }
    return {
        ...pod,
        model: {
            modelFormat: { name: "mlflow" },
            protocolVersion: "v2",
            runtime: ctx.runtime,
            storageUri: state.storageUri,
            resources: MLSERVER_POD.resources,
        },
    };
}

/** The InferenceService spec: the stable predictor, and the canary as `spec.canary` (Standard mode, KServe ≥ v0.20). */
export function inferenceServiceSpec(
    m: ServedModelConfig,
    state: ServedModelState,
    canary: ServedModelState | undefined,
    ctx: PredictorContext,
): Record<string, any> {
    const autoscale = m.replicas.max > m.replicas.min;
    const predictor = {
        ...predictorSpec(m, state, ctx),
        minReplicas: m.replicas.min,
        maxReplicas: m.replicas.max,
        ...(autoscale ? { scaleMetric: "cpu", scaleTarget: TARGET_CPU_PERCENT } : {}),
        // Surge only: a new model version is ready before an old pod goes.
        deploymentStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
    };
    if (!canary || !m.canary) return { predictor };
    // KServe sizes the canary itself (ceil(stable min × percent / 100)) and rejects autoscaling fields on it.
    // It merges the canary predictor over the stable one; the CRD requires `model.name` on a canary,
    // and naming it like the runtime's container keeps that merge (and the storage initializer, which
    // looks for `kserve-container`) working.
    const canaryPredictor = predictorSpec(m, canary, ctx);
    if (canaryPredictor.model) canaryPredictor.model = { name: KSERVE_CONTAINER, ...canaryPredictor.model };
    return {
        predictor,
        canary: [{ trafficPercent: m.canary.trafficPercent, predictor: { name: "canary", ...canaryPredictor } }],
    };
}

/** Deployment mode, plus where the served model came from (for people reading the cluster). */
export function inferenceServiceAnnotations(m: ServedModelConfig, state: ServedModelState): Record<string, string> {
    return {
        [DEPLOYMENT_MODE_ANNOTATION]: DEPLOYMENT_MODE,
        "mlflow-platform/registered-model": m.registeredModel,
        "mlflow-platform/alias": m.alias,
        "mlflow-platform/resolved-by": state.resolvedBy,
        ...(state.version !== undefined ? { [VERSION_ANNOTATION]: state.version } : {}),
    };
}

/**
 * An InferenceService template for the controller to create a missing one exactly as ModelServing
 * declares it (runtime, service account, replicas, resources), minus what the controller owns.
 */
export function inferenceServiceTemplate(m: ServedModelConfig, ctx: PredictorContext): Record<string, unknown> {
    const spec = inferenceServiceSpec(m, { resolvedBy: "storageUri" }, undefined, ctx);
    delete spec.predictor?.model?.storageUri;
    const annotations: Record<string, string> = { ...inferenceServiceAnnotations(m, { resolvedBy: "storageUri" }), "mlflow-platform/resolved-by": "deploy-controller" };
    delete annotations[VERSION_ANNOTATION];
    return {
        metadata: { labels: { ...labels(COMPONENT, APP, m.name), "app.kubernetes.io/managed-by": FIELD_MANAGER }, annotations: { [DEPLOYMENT_MODE_ANNOTATION]: DEPLOYMENT_MODE, ...annotations } },
        spec,
    };
}

/** Canary replica counts as KServe v0.20 computes them in Standard mode, and the resulting traffic share. */
export function canarySplit(stableMinReplicas: number, trafficPercent: number) {
    const canaryReplicas = Math.ceil((stableMinReplicas * trafficPercent) / 100);
    const stableReplicas = Math.max(stableMinReplicas - canaryReplicas, 1);
    return { canaryReplicas, stableReplicas, effectivePercent: Math.round((100 * canaryReplicas) / (canaryReplicas + stableReplicas)) };
}
