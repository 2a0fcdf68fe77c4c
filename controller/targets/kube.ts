// Kubernetes serving targets, through @kubernetes/client-node with the pod's service account:
// - InferenceService: the controller owns `spec.predictor.model.storageUri` and the version annotation.
//   It reads the object, creates it from a template when it is missing (POST), and otherwise writes
//   just those two fields with server-side apply (field manager `mlflow-deploy-controller`, force), so
//   the API server records the controller as their only owner and Pulumi, which ignores them after
//   creation, never conflicts with it.
// - Deployment (image mode): the same for one container's image (`<imageRepository>:<version>`); never created.
import { ApiException, AppsV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { FIELD_MANAGER, VERSION_ANNOTATION, type ControllerConfig, type DeploymentTarget, type InferenceServiceTarget } from "../config";
import type { Observed } from "../decide";
import { Apply, ServingTarget, TargetError, withTimeout } from "./types";

const ISVC = { group: "serving.kserve.io", version: "v1beta1", plural: "inferenceservices", kind: "InferenceService" } as const;
const apply = () => setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);

/** The API client configuration: an explicit server (tests, local), else in-cluster, else $KUBECONFIG. */
export function kubeConfig(k: ControllerConfig["kubernetes"], env: NodeJS.ProcessEnv = process.env): KubeConfig {
    const kc = new KubeConfig();
    if (k.server) {
        kc.loadFromOptions({
            clusters: [{ name: "target", server: k.server, caFile: k.caFile, skipTLSVerify: k.insecureSkipTlsVerify }],
            users: [{ name: "controller", ...(k.tokenFile ? { authProvider: { name: "tokenFile", config: { tokenFile: k.tokenFile } } } : {}) }],
            contexts: [{ name: "target", cluster: "target", user: "controller" }],
            currentContext: "target",
        });
    } else if (env.KUBERNETES_SERVICE_HOST) {
        // Reads the projected token file again every 60 s, so rotated tokens are picked up.
        kc.loadFromCluster();
    } else {
        kc.loadFromDefault();
    }
    return kc;
}

/** A TargetError from whatever the client threw; keeps the HTTP status and the API server's message. */
export function kubeError(e: unknown, what: string): TargetError {
    if (e instanceof TargetError) return e;
    if (e instanceof ApiException) {
        let message: string | undefined;
        const body = e.body as unknown;
        try {
            const parsed = typeof body === "string" ? JSON.parse(body) : body;
            message = (parsed as { message?: string } | undefined)?.message;
        } catch {
            message = typeof body === "string" ? body.slice(0, 200) : undefined;
        }
        return new TargetError(`${what}: HTTP ${e.code}${message ? `: ${message}` : ""}`, "kubernetes", e.code);
    }
    const err = e as Error & { code?: string };
    return new TargetError(`${what}: ${err.code ?? err.message}`, "kubernetes");
}

const notFound = (e: unknown) => e instanceof ApiException && e.code === 404;

function clone<T>(v: T): T {
    return JSON.parse(JSON.stringify(v)) as T;
}

/** The InferenceService the controller creates when none exists. */
export function inferenceServiceForCreate(t: InferenceServiceTarget, a: Apply): Record<string, any> {
    const base: Record<string, any> = clone(
        t.template ?? {
            metadata: { annotations: { "serving.kserve.io/deploymentMode": "Standard" } },
            spec: { predictor: { model: { modelFormat: { name: "mlflow" }, protocolVersion: "v2" } } },
        },
    );
    const metadata = { ...(base.metadata ?? {}) };
    const labels = { "app.kubernetes.io/managed-by": FIELD_MANAGER, ...(metadata.labels ?? {}) };
    const body: Record<string, any> = {
        ...base,
        apiVersion: `${ISVC.group}/${ISVC.version}`,
        kind: ISVC.kind,
        metadata: { ...metadata, name: t.name, namespace: t.namespace, labels, annotations: { ...(metadata.annotations ?? {}), [VERSION_ANNOTATION]: a.version } },
    };
    body.spec = body.spec ?? {};
    body.spec.predictor = body.spec.predictor ?? {};
    body.spec.predictor.model = { ...(body.spec.predictor.model ?? { modelFormat: { name: "mlflow" }, protocolVersion: "v2" }), storageUri: a.artifact };
    return body;
}

/** The server-side apply configuration of the fields the controller owns on an InferenceService. */
export function inferenceServiceApplyPatch(t: InferenceServiceTarget, a: Apply): Record<string, any> {
    return {
        apiVersion: `${ISVC.group}/${ISVC.version}`,
        kind: ISVC.kind,
        metadata: { name: t.name, namespace: t.namespace, annotations: { [VERSION_ANNOTATION]: a.version } },
        spec: { predictor: { model: { storageUri: a.artifact } } },
    };
}

/** What an InferenceService serves, as far as the controller's fields go. */
export function observeInferenceService(obj: any): Observed {
    const predictor = obj?.spec?.predictor ?? {};
    const version = obj?.metadata?.annotations?.[VERSION_ANNOTATION];
    if (!predictor.model && Array.isArray(predictor.containers) && predictor.containers.length > 0) {
        return { exists: true, version, incompatible: "its predictor runs a custom container (image mode); follow it with a Deployment target" };
    }
    return { exists: true, artifact: predictor.model?.storageUri, version };
}

export class InferenceServiceTargetImpl implements ServingTarget {
    readonly canCreate = true;
    readonly description: string;
    private readonly api: CustomObjectsApi;

    constructor(
        private readonly t: InferenceServiceTarget,
        kc: KubeConfig,
        private readonly timeoutMs: number,
    ) {
        this.description = `InferenceService ${t.namespace}/${t.name}`;
        this.api = kc.makeApiClient(CustomObjectsApi);
    }

    artifactFor(_version: string, storageUri: string): string {
        return storageUri;
    }

    private call<T>(p: () => Promise<T>, what: string): Promise<T> {
        return withTimeout(p(), this.timeoutMs, `${what} ${this.description}`, "kubernetes");
    }

    async observe(): Promise<Observed> {
        const ref = { group: ISVC.group, version: ISVC.version, plural: ISVC.plural, namespace: this.t.namespace, name: this.t.name };
        try {
            const obj = await this.call(() => this.api.getNamespacedCustomObject(ref), "get");
            return observeInferenceService(obj);
        } catch (e) {
            if (notFound(e)) return { exists: false };
            throw kubeError(e, `get ${this.description}`);
        }
    }

    async create(a: Apply): Promise<void> {
        const body = inferenceServiceForCreate(this.t, a);
        try {
            await this.call(
                () => this.api.createNamespacedCustomObject({ group: ISVC.group, version: ISVC.version, plural: ISVC.plural, namespace: this.t.namespace, body, fieldManager: FIELD_MANAGER }),
                "create",
            );
        } catch (e) {
            throw kubeError(e, `create ${this.description}`);
        }
    }

    async patch(a: Apply): Promise<void> {
        const body = inferenceServiceApplyPatch(this.t, a);
        try {
            await this.call(
                () =>
                    this.api.patchNamespacedCustomObject(
                        { group: ISVC.group, version: ISVC.version, plural: ISVC.plural, namespace: this.t.namespace, name: this.t.name, body, fieldManager: FIELD_MANAGER, force: true },
                        apply(),
                    ),
                "patch",
            );
        } catch (e) {
            throw kubeError(e, `patch ${this.description}`);
        }
    }
}

/** The server-side apply configuration of a Deployment's followed container image and version annotation. */
export function deploymentApplyPatch(t: DeploymentTarget, a: Apply): Record<string, any> {
    return {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: t.name, namespace: t.namespace, annotations: { [VERSION_ANNOTATION]: a.version } },
        spec: { template: { spec: { containers: [{ name: t.container, image: a.artifact }] } } },
    };
}

export function observeDeployment(t: DeploymentTarget, obj: any): Observed {
    const version = obj?.metadata?.annotations?.[VERSION_ANNOTATION];
    const container = (obj?.spec?.template?.spec?.containers ?? []).find((c: any) => c?.name === t.container);
    if (!container) return { exists: true, version, incompatible: `it has no container named "${t.container}"` };
    return { exists: true, artifact: container.image, version };
}

export class DeploymentTargetImpl implements ServingTarget {
    readonly canCreate = false;
    readonly description: string;
    private readonly api: AppsV1Api;

    constructor(
        private readonly t: DeploymentTarget,
        kc: KubeConfig,
        private readonly timeoutMs: number,
    ) {
        this.description = `Deployment ${t.namespace}/${t.name}`;
        this.api = kc.makeApiClient(AppsV1Api);
    }

    artifactFor(version: string): string {
        return `${this.t.imageRepository}:${version}`;
    }

    async observe(): Promise<Observed> {
        try {
            const obj = await withTimeout(this.api.readNamespacedDeployment({ name: this.t.name, namespace: this.t.namespace }), this.timeoutMs, `get ${this.description}`, "kubernetes");
            return observeDeployment(this.t, obj);
        } catch (e) {
            if (notFound(e)) return { exists: false };
            throw kubeError(e, `get ${this.description}`);
        }
    }

    async create(): Promise<void> {
        throw new TargetError(`${this.description} does not exist; the controller never creates Deployments`, "target");
    }

    async patch(a: Apply): Promise<void> {
        const body = deploymentApplyPatch(this.t, a);
        try {
            await withTimeout(
                this.api.patchNamespacedDeployment({ name: this.t.name, namespace: this.t.namespace, body, fieldManager: FIELD_MANAGER, force: true }, apply()),
                this.timeoutMs,
                `patch ${this.description}`,
                "kubernetes",
            );
        } catch (e) {
            throw kubeError(e, `patch ${this.description}`);
        }
    }
}
