// Model serving on one machine, standing in for KServe in Standard mode: for each InferenceService in the
// local Kubernetes API (declared by Pulumi, or created and patched by the deploy controller as the registry
// alias moves), fetch its storageUri with KServe's own storage initializer (kserve-storage, with the env
// KServe derives from the serving.kserve.io/s3-* annotations and the read-only Secret) into the
// /mnt/models stand-in, and start MLServer as the rendered ServingRuntime describes.
import * as fs from "fs";
import * as path from "path";
import { predictorService } from "../../components/modelServing/inferenceService";
import { KSERVE_CONTAINER, MODEL_MOUNT } from "../../components/modelServing/runtime";
import { VERSION_ANNOTATION } from "../../shared/mlflow";
import { limitsOf } from "./cgroups";
import { diskLimitsOf } from "./eviction";
import { componentOf, containerProcess, LocalService, localMounts, localVolumes, ProcessSpec, rewriteServiceAddresses, SYSTEM_PATH, ToolPaths } from "./mapping";
import type { Layout } from "./layout";
import type { LocalPod } from "./prometheus";
import type { Container, RenderedStack } from "./stack";
import { Managed, Supervisor, waitUntil, httpStatus, tail } from "./supervisor";

const KSERVE = "serving.kserve.io";

/**
 * The env KServe gives the storage initializer for S3 (pkg/credentials/s3: BuildSecretEnvs and
 * BuildS3EnvVars, v0.20): the keys from the Secret (names from the stock inferenceservice-config,
 * s3AccessKeyIDName/s3SecretAccessKeyName = AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), and from the
 * s3-* annotations the endpoint (S3_ENDPOINT, AWS_ENDPOINT_URL with http:// when s3-usehttps is "0"),
 * S3_USE_HTTPS, S3_VERIFY_SSL and AWS_DEFAULT_REGION.
 */
export function kserveS3Env(annotations: Record<string, string>, secret: Record<string, string>): Record<string, string> {
    const a = (k: string) => annotations[`${KSERVE}/${k}`];
    const env: Record<string, string> = { AWS_ACCESS_KEY_ID: secret.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: secret.AWS_SECRET_ACCESS_KEY };
    const endpoint = a("s3-endpoint");
    if (endpoint !== undefined) {
        const https = a("s3-usehttps");
        if (https !== undefined) env.S3_USE_HTTPS = https;
        env.S3_ENDPOINT = endpoint;
        env.AWS_ENDPOINT_URL = `${https === "0" ? "http" : "https"}://${endpoint}`;
    }
    if (a("s3-verifyssl") !== undefined) env.S3_VERIFY_SSL = a("s3-verifyssl");
    if (a("s3-useanoncredential") !== undefined) env.awsAnonymousCredential = a("s3-useanoncredential");
    if (a("s3-region") !== undefined) env.AWS_DEFAULT_REGION = a("s3-region");
    if (a("s3-usevirtualbucket") !== undefined) env.S3_USER_VIRTUAL_BUCKET = a("s3-usevirtualbucket");
    return env;
}

/**
 * The serving identity of the stack: the ServiceAccount carrying the s3-* annotations and the Secret it
 * lists. KServe reads the annotations from the Secret (the ServiceAccount's only with an IRSA role);
 * the platform puts them on the ServiceAccount, so they are merged here with the Secret's winning.
 */
export function servingIdentity(stack: RenderedStack, serviceAccountName?: string): { serviceAccount: string; annotations: Record<string, string>; secret: Record<string, string> } {
    const sa = stack.find(
        "ServiceAccount",
        (o) => (serviceAccountName === undefined || o.metadata.name === serviceAccountName) && Object.keys((o.metadata as any).annotations ?? {}).some((k) => k.startsWith(`${KSERVE}/s3-`)),
    )[0] as any;
    if (!sa) throw new Error(`the rendered stack has no ServiceAccount${serviceAccountName ? ` ${serviceAccountName}` : ""} with serving.kserve.io/s3-* annotations (serving disabled?)`);
    const secretName = sa.secrets?.[0]?.name;
    if (!secretName) throw new Error(`ServiceAccount ${sa.metadata.name} lists no Secret`);
    const secretObj = stack.get("Secret", secretName) as any;
    return {
        serviceAccount: sa.metadata.name,
        annotations: { ...sa.metadata.annotations, ...(secretObj.metadata.annotations ?? {}) },
        secret: stack.secretData(secretName),
    };
}

/** The MLServer env var that tells it each container port (components/modelServing.ts mlserverEnv). */
export const MLSERVER_PORT_ENV: Record<string, string> = { MLSERVER_HTTP_PORT: "http", MLSERVER_GRPC_PORT: "grpc", MLSERVER_METRICS_PORT: "metrics" };

/**
 * MLServer's process for one InferenceService: the runtime's kserve-container with KServe's
 * `{{.Name}}` templating, /mnt/models (KServe's provisioning volume) and the runtime's volumes mapped,
 * each port moved to its loopback port, and MLServer told to bind 127.0.0.1 (its default is 0.0.0.0).
 */
export function mlserverProcess(
    runtime: Container,
    isvc: string,
    ports: Record<string, number>,
    ctx: { stack: RenderedStack; component: string; services: LocalService[]; volumeDirs: Record<string, string>; tools: ToolPaths; defaultCwd: string },
): ProcessSpec {
    const templated: Container = {
        ...runtime,
        env: (runtime.env ?? []).map((e) => (e.value !== undefined ? { ...e, value: e.value.replace(/\{\{\.Name\}\}/g, isvc) } : e)),
        volumeMounts: [...(runtime.volumeMounts ?? []), { name: "kserve-provision-location", mountPath: MODEL_MOUNT, readOnly: true }],
    };
    const spec = containerProcess(templated, { ...ctx, mounts: localMounts(templated, ctx.volumeDirs) });
    for (const [envName, portName] of Object.entries(MLSERVER_PORT_ENV)) {
        if (spec.env[envName] === undefined) throw new Error(`ServingRuntime container has no ${envName}`);
        const declared = runtime.ports?.find((p) => p.name === portName);
        if (!declared || Number(spec.env[envName]) !== declared.containerPort) throw new Error(`${envName} does not match the runtime's ${portName} port`);
        spec.env[envName] = String(ports[portName]);
    }
    spec.env.MLSERVER_HOST = "127.0.0.1";
    return spec;
}

export interface ServedModel {
    isvc: string;
    /** The InferenceService's `mlflow-platform/registered-model` and `…/model-version` annotations, when set. */
    registeredModel?: string;
    version?: string;
    storageUri: string;
    /** Port name → loopback port (http, grpc, metrics). */
    ports: Record<string, number>;
    process: Managed;
}

export interface ServingOptions {
    stack: RenderedStack;
    services: LocalService[];
    tools: ToolPaths & { kserveStorageVenv: string };
    layout: Layout;
    supervisor: Supervisor;
    /** Where the InferenceServices live: the local platform's Kubernetes API server. */
    inferenceServices: InferenceServiceSource;
    allocatePorts: (keys: string[]) => Promise<Record<string, number>>;
    /** Called whenever the set of running model servers changes (Prometheus targets). */
    onChange: (pods: LocalPod[]) => void;
    log: (line: string) => void;
}

/** The InferenceServices of the stack's namespace, a callback on each change, and their status subresource. */
export interface InferenceServiceSource {
    list(): Promise<any[]>;
    onChange(f: () => void): void;
    writeStatus(name: string, status: Record<string, unknown>): Promise<void>;
}

/**
 * The status KServe writes on an InferenceService (what `kubectl get inferenceservice` shows): the
 * predictor's, ingress's and overall Ready conditions and, once ready, the URL its Service answers on.
 */
export function inferenceServiceStatus(isvc: string, namespace: string, ready: boolean, message?: string): Record<string, unknown> {
    const now = new Date().toISOString();
    const cond = (type: string, ok: boolean) => ({ type, status: ok ? "True" : "False", lastTransitionTime: now, ...(ok ? {} : { reason: "PredictorNotReady", message: message ?? "the model server is starting" }) });
    const url = `http://${predictorService(isvc).serviceName}.${namespace}.svc.cluster.local`;
    return {
        conditions: [cond("IngressReady", true), cond("PredictorReady", ready), cond("Ready", ready)],
        ...(ready ? { url, address: { url } } : {}),
        modelStatus: { states: { activeModelState: ready ? "Loaded" : "Pending", targetModelState: "Loaded" }, transitionStatus: ready ? "UpToDate" : "InProgress" },
    };
}

/** Retry interval after a failed pass (changes are acted on at once). */
const RETRY_MS = 5000;

/** What an InferenceService asks KServe to serve, in the fields the local stand-in honours. */
export interface DesiredModel {
    isvc: string;
    storageUri: string;
    runtime: string;
    serviceAccountName?: string;
    registeredModel?: string;
    version?: string;
}

/** The predictor of an InferenceService as the local stand-in reads it; undefined when it has no storageUri yet. */
export function desiredModel(isvc: any): DesiredModel | undefined {
    const model = isvc.spec?.predictor?.model;
    if (!model?.storageUri) return undefined;
    if (!model.runtime) throw new Error(`InferenceService ${isvc.metadata.name}: predictor.model.runtime is not set (the local stand-in does not pick runtimes by model format)`);
    const a = isvc.metadata.annotations ?? {};
    return {
        isvc: isvc.metadata.name,
        storageUri: model.storageUri,
        runtime: model.runtime,
        serviceAccountName: isvc.spec.predictor.serviceAccountName,
        registeredModel: a["mlflow-platform/registered-model"],
        version: a[VERSION_ANNOTATION],
    };
}

/**
 * KServe's part, locally: keeps one MLServer per InferenceService of the Kubernetes API stand-in, on its
 * storageUri. A new storageUri is a new pod (fresh volumes, the storage initializer, MLServer); a deleted
 * InferenceService stops its server. Acts on every change to the objects, and retries failures.
 */
export class ServingWatcher {
    readonly served = new Map<string, ServedModel>();
    private timer?: NodeJS.Timeout;
    private busy?: Promise<void>;
    private again = false;
    private stopped = false;
    /** The last reconcile error, if any (shown by the launcher, read by tests). */
    lastError?: string;

    constructor(private readonly o: ServingOptions) {}

    start(): void {
        this.o.inferenceServices.onChange(() => this.kick());
        this.kick();
    }

    /** A pass now, or right after the running one. */
    private kick(): void {
        if (this.stopped) return;
        if (this.busy) {
            this.again = true;
            return;
        }
        clearTimeout(this.timer);
        this.busy = this.reconcile()
            .then(() => (this.lastError = undefined))
            .catch((e) => {
                const msg = (e as Error).message;
                if (msg !== this.lastError) this.o.log(`serving: ${msg}`);
                this.lastError = msg;
            })
            .finally(() => {
                this.busy = undefined;
                if (this.stopped) return;
                const now = this.again;
                this.again = false;
                if (now) this.kick();
                else if (this.lastError) this.timer = setTimeout(() => this.kick(), RETRY_MS);
            });
    }

    /** One pass: every InferenceService with a storageUri is served from it; servers of deleted ones stop. */
    async reconcile(): Promise<void> {
        const desired = (await this.o.inferenceServices.list())
            .filter((o) => o.metadata.namespace === this.o.stack.namespace)
            .map((o: any) => desiredModel(o))
            .filter((d: DesiredModel | undefined): d is DesiredModel => d !== undefined);
        for (const [isvc, m] of this.served) {
            if (desired.some((d: DesiredModel) => d.isvc === isvc)) continue;
            this.o.log(`serving: InferenceService ${isvc} is gone; stopping its server`);
            await m.process.stop();
            this.served.delete(isvc);
            this.o.onChange(this.pods());
        }
        for (const d of desired) {
            const current = this.served.get(d.isvc);
            if (current && current.storageUri === d.storageUri) {
                current.version = d.version;
                continue;
            }
            await this.deploy(d, current);
        }
    }

    /** Waits until `isvc` serves (`version`, when given), or the timeout. */
    async waitForModel(isvc: string, timeoutMs: number, version?: string): Promise<ServedModel> {
        await waitUntil(
            `model server ${isvc}`,
            async () => {
                const m = this.served.get(isvc);
                return m !== undefined && (version === undefined || m.version === version);
            },
            timeoutMs,
            () => this.lastError ?? "",
        );
        return this.served.get(isvc)!;
    }

    async stop(): Promise<void> {
        this.stopped = true;
        if (this.timer) clearTimeout(this.timer);
        await this.busy?.catch(() => undefined);
        for (const m of this.served.values()) await m.process.stop();
        this.served.clear();
    }

    private async deploy(d: DesiredModel, previous?: ServedModel): Promise<void> {
        const { stack, tools, layout, supervisor } = this.o;
        const isvc = d.isvc;
        const runtimeObj = [...stack.find("ServingRuntime"), ...stack.find("ClusterServingRuntime")].find((r) => r.metadata.name === d.runtime);
        if (!runtimeObj) throw new Error(`InferenceService ${isvc}: the rendered stack has no ServingRuntime ${d.runtime}`);
        const runtimeSpec = (runtimeObj as any).spec;
        const runtime: Container = runtimeSpec.containers.find((c: Container) => c.name === KSERVE_CONTAINER);
        const what = d.registeredModel ? `${d.registeredModel} version ${d.version ?? "?"}` : "a model";
        this.o.log(`serving: InferenceService ${isvc} asks for ${what} at ${d.storageUri}; starting its server`);

        // A new pod: fresh volumes, the model downloaded by the storage initializer (an init container).
        // One port set per InferenceService, so the old server stops first (no surge, unlike KServe's rollout).
        if (previous) {
            await previous.process.stop();
            this.served.delete(isvc);
            this.o.onChange(this.pods());
        }
        await this.status(isvc, false);
        const podName = `isvc-${isvc}`;
        const volumes = { ...localVolumes({ containers: [runtime], volumes: runtimeSpec.volumes }, stack), "kserve-provision-location": { kind: "emptyDir" as const } };
        const dirs = layout.materialize(podName, volumes);
        const identity = servingIdentity(stack, d.serviceAccountName);
        const initEnv: Record<string, string> = {
            ...kserveS3Env(identity.annotations, identity.secret),
            PATH: `${path.join(tools.kserveStorageVenv, "bin")}:${SYSTEM_PATH}`,
            HOME: dirs["kserve-provision-location"],
        };
        // The S3 endpoint in the annotations is a Service address: map it to loopback like any other.
        for (const k of ["S3_ENDPOINT", "AWS_ENDPOINT_URL"] as const) {
            if (initEnv[k] !== undefined) initEnv[k] = rewriteServiceAddresses(initEnv[k], this.o.services);
        }
        await supervisor.run(`${podName}-storage-initializer`, {
            argv: [path.join(tools.kserveStorageVenv, "bin", "python"), "-c", "import sys; from kserve_storage import Storage; Storage.download(sys.argv[1], sys.argv[2])", d.storageUri, dirs["kserve-provision-location"]],
            env: initEnv,
            cwd: layout.pod(podName),
        });
        if (!fs.existsSync(path.join(dirs["kserve-provision-location"], "MLmodel"))) {
            throw new Error(`storage initializer put no MLmodel into ${dirs["kserve-provision-location"]} from ${d.storageUri}`);
        }

        const ports = await this.o.allocatePorts((runtime.ports ?? []).map((p) => `isvc/${isvc}/${p.name}`));
        const portsByName = Object.fromEntries((runtime.ports ?? []).map((p) => [p.name!, ports[`isvc/${isvc}/${p.name}`]]));
        const spec = mlserverProcess(runtime, isvc, portsByName, { stack, component: componentOf((runtimeObj.metadata as { labels?: Record<string, string> }).labels), services: this.o.services, volumeDirs: dirs, tools, defaultCwd: layout.pod(podName) });
        // The runtime container's limits (KServe takes them when the predictor sets none, as the rendered ones do).
        const proc = supervisor.start(isvc, spec, { graceMs: 30_000, limits: limitsOf(runtime), disk: diskLimitsOf({ containers: [runtime], volumes: runtimeSpec.volumes }, dirs) });
        await waitUntil(
            `MLServer ${isvc}`,
            async () => (await httpStatus(`http://127.0.0.1:${portsByName.http}/v2/models/${isvc}/ready`)) === 200,
            300_000,
            () => tail(proc.logFile),
        );
        this.served.set(isvc, { isvc, registeredModel: d.registeredModel, version: d.version, storageUri: d.storageUri, ports: portsByName, process: proc });
        await this.status(isvc, true);
        this.o.onChange(this.pods());
        this.o.log(`serving: ${isvc} ready, v2 inference at http://127.0.0.1:${portsByName.http}/v2/models/${isvc}/infer`);
    }

    /** Writes the InferenceService's status as KServe would; a failed write is logged, not fatal to serving. */
    private async status(isvc: string, ready: boolean): Promise<void> {
        await this.o.inferenceServices.writeStatus(isvc, inferenceServiceStatus(isvc, this.o.stack.namespace, ready)).catch((e) => this.o.log(`serving: status of ${isvc} not written: ${(e as Error).message}`));
    }

    /** The model servers as pods, labelled as KServe labels predictor pods (for the PodMonitor). */
    pods(): LocalPod[] {
        return [...this.served.values()].map((m) => ({
            name: `${m.isvc}-predictor-local`,
            namespace: this.o.stack.namespace,
            labels: { [`${KSERVE}/inferenceservice`]: m.isvc, component: "predictor" },
            ports: m.ports,
            container: KSERVE_CONTAINER,
        }));
    }
}
