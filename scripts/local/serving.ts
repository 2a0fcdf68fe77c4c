// Model serving on one machine, standing in for KServe in Standard mode: when a registered model carries
// the serving alias, resolve it to its s3:// location (components/mlflowRegistry.ts, the code ModelServing
// uses at `pulumi up`), fetch it with KServe's own storage initializer (kserve-storage, with the env
// KServe derives from the serving.kserve.io/s3-* annotations and the read-only Secret) into the
// /mnt/models stand-in, and start MLServer as the rendered ServingRuntime describes.
import * as fs from "fs";
import * as path from "path";
import { DEFAULTS as SERVING_DEFAULTS, KSERVE_CONTAINER, MODEL_MOUNT } from "../../components/modelServing";
import { RegistryConnection, resolveAlias, ResolvedModel } from "../../components/mlflowRegistry";
import { containerProcess, LocalService, localMounts, localVolumes, ProcessSpec, rewriteServiceAddresses, SYSTEM_PATH, ToolPaths } from "./mapping";
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
export function servingIdentity(stack: RenderedStack): { serviceAccount: string; annotations: Record<string, string>; secret: Record<string, string> } {
    const sa = stack.find("ServiceAccount", (o) => Object.keys((o.metadata as any).annotations ?? {}).some((k) => k.startsWith(`${KSERVE}/s3-`)))[0] as any;
    if (!sa) throw new Error("the rendered stack has no ServiceAccount with serving.kserve.io/s3-* annotations (serving disabled?)");
    const secretName = sa.secrets?.[0]?.name;
    if (!secretName) throw new Error(`ServiceAccount ${sa.metadata.name} lists no Secret`);
    const secretObj = stack.get("Secret", secretName) as any;
    return {
        serviceAccount: sa.metadata.name,
        annotations: { ...sa.metadata.annotations, ...(secretObj.metadata.annotations ?? {}) },
        secret: stack.secretData(secretName),
    };
}

/** InferenceService name for a registered model: a DNS label of at most 45 characters. */
export function inferenceServiceName(registeredModel: string): string {
    const n = registeredModel
        .toLowerCase()
        .replace(/[^a-z0-9-]+/g, "-")
        .replace(/^[^a-z]+/, "")
        .slice(0, 45)
        .replace(/-+$/, "");
    if (!n) throw new Error(`registered model "${registeredModel}" has no usable InferenceService name`);
    return n;
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
    ctx: { stack: RenderedStack; services: LocalService[]; volumeDirs: Record<string, string>; tools: ToolPaths; defaultCwd: string },
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
    registeredModel: string;
    version: string;
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
    /** The registry, reached the way ModelServing does: through the ingress as its first user. */
    registry: RegistryConnection;
    /** `s3://<bucket>`: the tracking server's --artifacts-destination. */
    artifactsDestination: string;
    allocatePorts: (keys: string[]) => Promise<Record<string, number>>;
    /** Called whenever the set of running model servers changes (Prometheus targets). */
    onChange: (pods: LocalPod[]) => void;
    log: (line: string) => void;
    pollMs?: number;
}

/** Watches the registry for the serving alias and keeps one MLServer per aliased model, on the aliased version. */
export class ServingWatcher {
    readonly alias = SERVING_DEFAULTS.alias;
    readonly served = new Map<string, ServedModel>();
    private timer?: NodeJS.Timeout;
    private busy?: Promise<void>;
    private stopped = false;
    /** The last reconcile error, if any (shown by the launcher, read by tests). */
    lastError?: string;

    constructor(private readonly o: ServingOptions) {}

    start(): void {
        const tick = () => {
            if (this.stopped) return;
            this.busy = this.reconcile()
                .then(() => (this.lastError = undefined))
                .catch((e) => {
                    const msg = (e as Error).message;
                    if (msg !== this.lastError) this.o.log(`serving: ${msg}`);
                    this.lastError = msg;
                })
                .finally(() => {
                    if (!this.stopped) this.timer = setTimeout(tick, this.o.pollMs ?? 5000);
                });
        };
        tick();
    }

    /** One pass: every model with the alias is served at the aliased version. */
    async reconcile(): Promise<void> {
        for (const name of await this.aliasedModels()) {
            const resolved = await resolveAlias(this.o.registry, name, this.alias, this.o.artifactsDestination);
            const isvc = inferenceServiceName(name);
            const current = this.served.get(isvc);
            if (current && current.version === resolved.version && current.storageUri === resolved.storageUri) continue;
            await this.deploy(isvc, resolved, current);
        }
    }

    /** Waits for the running pass, then until `isvc` serves `version` (or the timeout). */
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

    private async aliasedModels(): Promise<string[]> {
        const names: string[] = [];
        let token: string | undefined;
        do {
            const url = new URL(`${this.o.registry.trackingUri}/api/2.0/mlflow/registered-models/search`);
            url.searchParams.set("max_results", "100");
            if (token) url.searchParams.set("page_token", token);
            const auth = Buffer.from(`${this.o.registry.username}:${this.o.registry.password}`).toString("base64");
            const res = await fetch(url, { headers: { authorization: `Basic ${auth}` }, signal: AbortSignal.timeout(this.o.registry.timeoutMs) });
            if (!res.ok) throw new Error(`registered-models/search answered ${res.status}`);
            const body = (await res.json()) as { registered_models?: { name: string; aliases?: { alias: string }[] }[]; next_page_token?: string };
            for (const m of body.registered_models ?? []) if (m.aliases?.some((a) => a.alias === this.alias)) names.push(m.name);
            token = body.next_page_token;
        } while (token);
        return names;
    }

    private async deploy(isvc: string, resolved: ResolvedModel, previous?: ServedModel): Promise<void> {
        const { stack, tools, layout, supervisor } = this.o;
        const runtimeObj = stack.find("ServingRuntime")[0] ?? stack.find("ClusterServingRuntime")[0];
        if (!runtimeObj) throw new Error("the rendered stack has no ServingRuntime");
        const runtimeSpec = (runtimeObj as any).spec;
        const runtime: Container = runtimeSpec.containers.find((c: Container) => c.name === KSERVE_CONTAINER);
        this.o.log(`serving: ${resolved.registeredModel}@${this.alias} is version ${resolved.version} (${resolved.storageUri}); starting ${isvc}`);

        // A new pod: fresh volumes, the model downloaded by the storage initializer (an init container).
        if (previous) await previous.process.stop();
        const podName = `isvc-${isvc}`;
        const volumes = { ...localVolumes({ containers: [runtime], volumes: runtimeSpec.volumes }, stack), "kserve-provision-location": { kind: "emptyDir" as const } };
        const dirs = layout.materialize(podName, volumes);
        const identity = servingIdentity(stack);
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
            argv: [path.join(tools.kserveStorageVenv, "bin", "python"), "-c", "import sys; from kserve_storage import Storage; Storage.download(sys.argv[1], sys.argv[2])", resolved.storageUri, dirs["kserve-provision-location"]],
            env: initEnv,
            cwd: layout.pod(podName),
        });
        if (!fs.existsSync(path.join(dirs["kserve-provision-location"], "MLmodel"))) {
            throw new Error(`storage initializer put no MLmodel into ${dirs["kserve-provision-location"]} from ${resolved.storageUri}`);
        }

        const ports = await this.o.allocatePorts((runtime.ports ?? []).map((p) => `isvc/${isvc}/${p.name}`));
        const portsByName = Object.fromEntries((runtime.ports ?? []).map((p) => [p.name!, ports[`isvc/${isvc}/${p.name}`]]));
        const spec = mlserverProcess(runtime, isvc, portsByName, { stack, services: this.o.services, volumeDirs: dirs, tools, defaultCwd: layout.pod(podName) });
        const proc = supervisor.start(isvc, spec, { graceMs: 30_000 });
        await waitUntil(
            `MLServer ${isvc}`,
            async () => (await httpStatus(`http://127.0.0.1:${portsByName.http}/v2/models/${isvc}/ready`)) === 200,
            300_000,
            () => tail(proc.logFile),
        );
        this.served.set(isvc, { isvc, registeredModel: resolved.registeredModel, version: resolved.version, storageUri: resolved.storageUri, ports: portsByName, process: proc });
        this.o.onChange(this.pods());
        this.o.log(`serving: ${isvc} ready, v2 inference at http://127.0.0.1:${portsByName.http}/v2/models/${isvc}/infer`);
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
