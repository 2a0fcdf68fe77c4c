// Kubernetes serving targets, through @kubernetes/client-node with the pod's service account:
// - InferenceService: the controller owns `spec.predictor.model.storageUri` and the version annotation.
//   It reads the object, creates it from a template when it is missing (POST), and otherwise writes
//   just those two fields with server-side apply (field manager `mlflow-deploy-controller`, force), so
//   the API server records the controller as their only owner and Pulumi, which ignores them after
//   creation, never conflicts with it.
import { ApiException, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { targetDescription } from "../config";
import type { ControllerConfig, InferenceServiceTarget } from "../../shared/controllerConfig";
import { FIELD_MANAGER, VERSION_ANNOTATION } from "../../shared/mlflow";
import type { Observed } from "../decide";
import { Apply, ServingTarget, TargetError, withTimeout } from "./types";

const ISVC = { group: "serving.kserve.io", version: "v1beta1", plural: "inferenceservices", kind: "InferenceService" } as const;
const apply = () => setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);
/** The predictor model of an InferenceService created without a template (or whose template has none). */
const DEFAULT_PREDICTOR_MODEL = { modelFormat: { name: "mlflow" }, protocolVersion: "v2" };

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
            spec: { predictor: { model: DEFAULT_PREDICTOR_MODEL } },
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
    body.spec.predictor.model = { ...(body.spec.predictor.model ?? clone(DEFAULT_PREDICTOR_MODEL)), storageUri: a.artifact };
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
        return { exists: true, version, incompatible: "its predictor runs a custom container (image mode), which the controller does not follow" };
    }
    return { exists: true, artifact: predictor.model?.storageUri, version };
}

/** The description, and API calls with a timeout whose failures become TargetErrors. */
abstract class KubeTarget<T extends InferenceServiceTarget> {
    readonly description: string;

    constructor(
        protected readonly t: T,
        private readonly timeoutMs: number,
    ) {
        this.description = targetDescription(t);
    }

    /** Reads the object with `get` and maps it with `observe`; a 404 means it does not exist. */
    protected async read<R>(get: () => Promise<R>, observe: (obj: R) => Observed): Promise<Observed> {
        try {
            return observe(await this.timed("get", get));
        } catch (e) {
            if (notFound(e)) return { exists: false };
            throw kubeError(e, `get ${this.description}`);
        }
    }

    protected async write(what: "create" | "patch", send: () => Promise<unknown>): Promise<void> {
        try {
            await this.timed(what, send);
        } catch (e) {
            throw kubeError(e, `${what} ${this.description}`);
        }
    }

    private timed<R>(what: string, call: () => Promise<R>): Promise<R> {
        return withTimeout(call(), this.timeoutMs, `${what} ${this.description}`, "kubernetes");
    }
}

export class InferenceServiceTargetImpl extends KubeTarget<InferenceServiceTarget> implements ServingTarget {
    readonly canCreate = true;
    private readonly api: CustomObjectsApi;

    constructor(t: InferenceServiceTarget, kc: KubeConfig, timeoutMs: number) {
        super(t, timeoutMs);
        this.api = kc.makeApiClient(CustomObjectsApi);
    }

    artifactFor(_version: string, storageUri: string): string {
        return storageUri;
    }

    async observe(): Promise<Observed> {
        const ref = { group: ISVC.group, version: ISVC.version, plural: ISVC.plural, namespace: this.t.namespace, name: this.t.name };
        return this.read(() => this.api.getNamespacedCustomObject(ref), observeInferenceService);
    }

    async create(a: Apply): Promise<void> {
        const body = inferenceServiceForCreate(this.t, a);
        return this.write("create", () =>
            this.api.createNamespacedCustomObject({ group: ISVC.group, version: ISVC.version, plural: ISVC.plural, namespace: this.t.namespace, body, fieldManager: FIELD_MANAGER }),
        );
    }

    async patch(a: Apply): Promise<void> {
        const body = inferenceServiceApplyPatch(this.t, a);
        return this.write("patch", () =>
            this.api.patchNamespacedCustomObject(
                { group: ISVC.group, version: ISVC.version, plural: ISVC.plural, namespace: this.t.namespace, name: this.t.name, body, fieldManager: FIELD_MANAGER, force: true },
                apply(),
            ),
        );
    }
}
