// The platform's pods as local processes: the node agent (./node.ts) hands each Pod the scheduler bound
// to it here, and gets back its containers as processes through the generic mapping (./mapping.ts), with
// what each workload needs beyond it (./workloads.ts): PostgreSQL's entrypoint (initdb, then POSTGRES_DB
// once the server answers), MinIO's and the tracking server's listen addresses, the deploy controller's
// config with the local API server and a renewed ServiceAccount token. Secrets and ConfigMaps come from
// the API server, as the kubelet mounts them; each pod listens on loopback ports of its own, which the
// Service proxy (./serviceProxy.ts) sends the Services' traffic to.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { COMPONENT as DATABASE } from "../../components/database";
import { COMPONENT as DEPLOY_CONTROLLER } from "../../components/deployController";
import { COMPONENT as OBJECT_STORE } from "../../components/objectStore";
import { COMPONENT as TRACKING_SERVER } from "../../components/trackingServer";
import { freePort } from "../lib/ports";
import { mapSelectorMatches } from "../../policy/lib/selectors";
import { KubeClient } from "../cluster/kubeClient";
import { limitsOf } from "./cgroups";
import { diskLimitsOf } from "./eviction";
import { Layout, Owner } from "./layout";
import { componentOf, ContainerContext, containerProcess, LocalService, localMounts, localVolumes, PodIdentity, ProcessSpec, replaceFlagValue } from "./mapping";
import type { Pod, PodRuntime, PreparedContainer, PreparedPod } from "./node";
import { createPostgresDatabase, initPostgres, waitForPostgres } from "./postgres";
import { Container, RenderedStack } from "./stack";
import { Supervisor } from "./supervisor";
import type { LocalTools } from "./tools";
import { deployControllerConfig, minioServer, POSTGRES_SOCKET_DIR, postgresClientPort, postgresServer, trackingServer } from "./workloads";

export interface PlatformRuntimeOptions {
    stack: RenderedStack;
    services: LocalService[];
    layout: Layout;
    tools: LocalTools;
    supervisor: Supervisor;
    /** The admin client: the node reads Secrets and ConfigMaps with it, as a kubelet with its node identity. */
    client: KubeClient;
    server: string;
    ca: string;
    /** A ServiceAccount token (TokenRequest), as the kubelet projects it. */
    token: (namespace: string, serviceAccount: string) => Promise<string>;
    /** Origins of the local edge (the tracking server's CORS list gets them). */
    edgeOrigins: string[];
    log: (line: string) => void;
}

/** How often a projected token is renewed (the kubelet renews at 80% of an hour's lifetime). */
const TOKEN_RENEW_MS = 20 * 60_000;

export class PlatformRuntime implements PodRuntime {
    /** Pod uid → container port → its loopback port. */
    private readonly podPorts = new Map<string, Record<number, number>>();
    /** libpq env of a loopback client of the database (set once its pod has created POSTGRES_DB). */
    database: Record<string, string> = {};
    /** `<registered model>@<alias>` the deploy controller follows (set once its pod is prepared). */
    followed: string[] = [];

    constructor(private readonly o: PlatformRuntimeOptions) {}

    /** Where a pod's container port listens (the Service proxy's endpoints). */
    readonly endpointPort = (uid: string, containerPort: number): number | undefined => this.podPorts.get(uid)?.[containerPort];

    /** The stack as the API server holds it now: Secrets and ConfigMaps read back, the rest as rendered. */
    private async view(namespace: string): Promise<RenderedStack> {
        const list = async (kind: string, plural: string) =>
            ((await this.o.client.call("GET", `/api/v1/namespaces/${namespace}/${plural}`)).body.items as any[]).map((x) => ({ ...x, apiVersion: "v1", kind }));
        const live = [...(await list("Secret", "secrets")), ...(await list("ConfigMap", "configmaps"))];
        return new RenderedStack([...this.o.stack.objects.filter((x) => x.kind !== "Secret" && x.kind !== "ConfigMap"), ...live], this.o.stack.order);
    }

    async prepare(pod: Pod, _claims: Record<string, string>): Promise<PreparedPod> {
        const { layout, tools } = this.o;
        const { name, namespace, uid } = pod.metadata;
        const component = componentOf(pod.metadata.labels);
        const view = await this.view(namespace);
        const projectsToken = (pod.spec.volumes ?? []).some((v) => v.projected?.sources.some((s) => s.serviceAccountToken));
        const serviceAccount = pod.spec.serviceAccountName ?? "default";
        const identity: PodIdentity | undefined = projectsToken ? { token: await this.o.token(namespace, serviceAccount), namespace, ca: this.o.ca } : undefined;
        const owner = component === DATABASE ? postgresOwner() : undefined;
        const dirs = layout.materialize(name, localVolumes(pod.spec, view, identity), owner);
        const ports: Record<number, number> = {};
        for (const c of pod.spec.containers) for (const p of c.ports ?? []) ports[p.containerPort] = await freePort();
        this.podPorts.set(uid, ports);
        const ctxOf = (c: Container): ContainerContext => {
            const mounts = localMounts(c, dirs);
            return { stack: view, component, services: this.o.services, mounts, mountTree: layout.mountTree(name, c.name, mounts), tools, defaultCwd: layout.pod(name) };
        };
        const apiServer = new URL(this.o.server);
        const kubernetesServiceEnv = { KUBERNETES_SERVICE_HOST: apiServer.hostname, KUBERNETES_SERVICE_PORT: apiServer.port || "443" };
        const graceMs = (pod.spec.terminationGracePeriodSeconds ?? 30) * 1000;
        const timers: NodeJS.Timeout[] = [];
        const prepared = async (c: Container): Promise<PreparedContainer> => {
            const ctx = ctxOf(c);
            const mapped = containerProcess(c, ctx);
            // What the kubelet gives every container: where the API server is (in-cluster clients read it).
            const base: typeof mapped = { ...mapped, env: { ...kubernetesServiceEnv, ...mapped.env } };
            const options = { graceMs, limits: limitsOf(c), disk: diskLimitsOf(pod.spec, dirs), ...(owner ? { uid: owner.uid, gid: owner.gid } : {}) };
            const preStop = c.lifecycle?.preStop?.exec?.command;
            const withHook = preStop ? { ...options, preStop: containerProcess({ ...c, command: preStop, args: [] }, ctx) } : options;
            const port = (cp: number) => ports[cp];
            // The loopback ports of the Services that select this pod: where its clients reach it.
            const reachedAt = () => {
                const selecting = view.find("Service", (x) => !!(x as any).spec.selector && mapSelectorMatches((x as any).spec.selector, pod.metadata.labels ?? {})).map((x) => x.metadata.name);
                return this.o.services.filter((x) => selecting.includes(x.name)).flatMap((x) => x.ports.map((p) => p.localPort));
            };
            const named = (n: string) => port(c.ports?.find((p) => p.name === n)?.containerPort ?? -1);
            switch (`${component}/${c.name}`) {
                case `${DATABASE}/postgres`: {
                    const socketDir = ctx.mounts.find((m) => m.mountPath === POSTGRES_SOCKET_DIR)?.localPath;
                    if (!socketDir) throw new Error(`pod ${name}: no ${POSTGRES_SOCKET_DIR} volume`);
                    if (owner) checkReachable(path.dirname(base.env.PGDATA), owner);
                    const pgPort = port(c.ports![0].containerPort);
                    await initPostgres({ name, spec: base, socketDir, pgBin: tools.pgBin, supervisor: this.o.supervisor, owner, log: this.o.log });
                    return {
                        name: c.name,
                        spec: postgresServer(base, pgPort, socketDir),
                        options: withHook,
                        postStart: async () => {
                            await waitForPostgres(tools.pgBin, pgPort);
                            const env = await createPostgresDatabase({ name, spec: base, pgBin: tools.pgBin, supervisor: this.o.supervisor, port: pgPort });
                            // A client outside the pod connects through its Service.
                            this.database = { ...env, PGPORT: String(reachedAt()[0] ?? pgPort) };
                        },
                    };
                }
                case `${OBJECT_STORE}/minio`:
                    return { name: c.name, spec: minioServer(base, port(c.ports![0].containerPort)), options: withHook };
                case `${TRACKING_SERVER}/mlflow`: {
                    const listen = port(c.ports![0].containerPort);
                    return { name: c.name, spec: trackingServer(base, listen, this.o.edgeOrigins, reachedAt()), options: withHook };
                }
                case `${DEPLOY_CONTROLLER}/controller`: {
                    const rendered = fs.readFileSync(base.argv[base.argv.indexOf("--config") + 1], "utf8");
                    const metricsPort = named("metrics");
                    const config = deployControllerConfig(rendered, { services: this.o.services, mounts: ctx.mounts, mountTree: ctx.mountTree, webhookPort: named("webhook"), metricsPort, kubeApiUrl: this.o.server });
                    // The kubelet renews a projected token well before it expires.
                    const renew = setInterval(() => {
                        this.o.token(namespace, serviceAccount).then(
                            (t) => fs.writeFileSync(config.kubernetes.tokenFile, t),
                            (e) => this.o.log(`pod ${name}: token renewal failed: ${(e as Error).message}`),
                        );
                    }, TOKEN_RENEW_MS);
                    renew.unref();
                    timers.push(renew);
                    this.followed = (config.models as { registeredModel: string; alias: string }[]).map((m) => `${m.registeredModel}@${m.alias}`);
                    const configFile = path.join(layout.pod(name), "config.local.json");
                    fs.writeFileSync(configFile, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
                    return { name: c.name, spec: { ...base, argv: replaceFlagValue(base.argv, "--config", configFile) }, options: withHook };
                }
                default:
                    return { name: c.name, spec: base, options: withHook };
            }
        };
        const init: PreparedContainer[] = [];
        for (const c of pod.spec.initContainers ?? []) init.push(await prepared(c));
        const containers: PreparedContainer[] = [];
        for (const c of pod.spec.containers) containers.push(await prepared(c));
        const all = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
        return {
            init,
            containers,
            ports,
            exec: (container, command): ProcessSpec => {
                const c = all.find((x) => x.name === container)!;
                const spec = containerProcess({ ...c, command, args: [] }, ctxOf(c));
                if (component !== DATABASE) return spec;
                // Inside the pod, the server is on the pod's own loopback at its container port.
                const cp = c.ports?.[0]?.containerPort;
                return cp === undefined ? spec : { ...spec, argv: postgresClientPort(spec.argv, cp, ports[cp]) };
            },
            cleanup: () => {
                timers.forEach(clearInterval);
                this.podPorts.delete(uid);
            },
        };
    }
}

/** PostgreSQL refuses to run as root: then it runs as Debian's `postgres` user. */
export function postgresOwner(): Owner | undefined {
    if (process.getuid?.() !== 0) return undefined;
    const line = fs
        .readFileSync("/etc/passwd", "utf8")
        .split("\n")
        .find((l) => l.startsWith("postgres:"));
    if (!line) throw new Error("running as root, but there is no `postgres` user to run PostgreSQL as (apt-get install postgresql creates it)");
    const [, , uid, gid] = line.split(":");
    return { uid: Number(uid), gid: Number(gid) };
}

function checkReachable(dir: string, owner: Owner): void {
    const r = spawnSync("/usr/bin/test", ["-w", dir], { uid: owner.uid, gid: owner.gid });
    if (r.status !== 0) {
        throw new Error(
            `PostgreSQL runs as the postgres user, which cannot write ${dir}: a parent directory is not searchable by others. ` +
                "Make the parents world-searchable (chmod o+x) or pass --dir with a data directory elsewhere.",
        );
    }
}
