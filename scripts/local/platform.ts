// The whole platform on one machine: renders the stack, then starts each workload as a process on
// 127.0.0.1 in the order the cluster would reach readiness (PostgreSQL, MinIO and its provisioning Job,
// the migration Job, the tracking server, the ingress, Prometheus, then model serving and the deploy
// controller), beside a real Kubernetes API server holding the applied stack (./cluster.ts). Used by
// `npm run local` and by the end-to-end tests.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { COMPONENT as DATABASE } from "../../components/database";
import { COMPONENT as DATABASE_BACKUP } from "../../components/databaseBackup";
import { COMPONENT as DEPLOY_CONTROLLER } from "../../components/deployController";
import { COMPONENT as OBJECT_STORE } from "../../components/objectStore";
import { COMPONENT as TRACKING_SERVER } from "../../components/trackingServer";
import { writeManifests } from "../lib/manifests";
import { startNginx, RunningNginx } from "../lib/nginx";
import { startKubernetesBuild } from "../cluster/controlPlane";
import { Cgroups, limitsOf } from "./cgroups";
import { LocalCluster } from "./cluster";
import { diskLimitsOf } from "./eviction";
import { claimLauncherLock, LauncherLock } from "./lock";
import { Layout, Owner } from "./layout";
import {
    componentOf,
    ContainerContext,
    containerProcess,
    LocalService,
    localMounts,
    localPortsFor,
    localVolumes,
    PodIdentity,
    ProcessSpec,
    replaceFlagValue,
    servicePortKey,
} from "./mapping";
import { startLocalPostgres } from "./postgres";
import { LocalPod, prometheusConfig, ruleFile, scrapeJobs } from "./prometheus";
import { ServingWatcher } from "./serving";
import { Container, persistentSeed, RenderedStack, renderStack } from "./stack";
import { httpStatus, Managed, Supervisor, tail, waitUntil } from "./supervisor";
import { ensureLocalTools, LocalTools } from "./tools";
import {
    deployControllerConfig,
    ingressLogin,
    ingressRoutes,
    minioServer,
    POSTGRES_SOCKET_DIR,
    trackingServer,
    workloadOf,
    workloadsOf,
} from "./workloads";

export interface PlatformOptions {
    /** Stack to render. Default `dev`. */
    stack?: string;
    /** Data directory (seed, ports, volumes, logs). */
    dir: string;
    /** Start model serving (MLServer for each InferenceService). Default true when the stack has a ServingRuntime. */
    serving?: boolean;
    log?: (line: string) => void;
    /** Already-installed tools (skips the installer call). */
    tools?: LocalTools;
    /** Aborts a start in progress (Ctrl-C while starting): what was started is stopped. */
    signal?: AbortSignal;
    /** Addresses the edge also listens on besides 127.0.0.1: a test network's, for a client that can reach only the edge. */
    edgeAddresses?: string[];
}


/** The rendered stack per process: runProgram may run once per process, so a restart reuses it. */
const renders = new Map<string, Promise<RenderedStack>>();

export class LocalPlatform {
    readonly processes: Record<string, Managed> = {};
    nginx?: RunningNginx;
    serving?: ServingWatcher;
    /** The platform's Kubernetes API server, holding the applied stack (the InferenceServices among it). */
    cluster?: LocalCluster;
    /** `<registered model>@<alias>` the deploy controller follows (empty without one). */
    followed: string[] = [];
    /** Loopback ports by key (`svc/<name>/<port>`, `ingress`, `prometheus`). */
    ports: Record<string, number> = {};
    services: LocalService[] = [];
    login = { user: "", password: "" };
    /** Env of the database, as the rendered clients get it, mapped to loopback (PG* and the password). */
    database: Record<string, string> = {};
    private stopped = false;
    private lock?: LauncherLock;
    private tokenRefresh?: NodeJS.Timeout;

    private constructor(
        readonly options: Required<Pick<PlatformOptions, "stack" | "dir">> & PlatformOptions,
        readonly layout: Layout,
        readonly supervisor: Supervisor,
        readonly tools: LocalTools,
        readonly stack: RenderedStack,
    ) {}

    get log(): (line: string) => void {
        return this.options.log ?? ((l) => console.log(l));
    }
    get uiUrl(): string {
        return `http://127.0.0.1:${this.ports.ingress}`;
    }
    get prometheusUrl(): string {
        return `http://127.0.0.1:${this.ports.prometheus}`;
    }
    /** `s3://<bucket>`: the tracking server's --artifacts-destination. */
    get artifactsDestination(): string {
        const args = workloadOf(this.stack, "Deployment", TRACKING_SERVER).container.args ?? [];
        return args[args.indexOf("--artifacts-destination") + 1];
    }
    /** The loopback port standing in for a Service port. */
    servicePort(name: string, port: number): number {
        const p = this.services.find((s) => s.name === name)?.ports.find((x) => x.port === port);
        if (!p) throw new Error(`no Service ${name} port ${port}`);
        return p.localPort;
    }

    static async start(options: PlatformOptions): Promise<LocalPlatform> {
        const o = { stack: "dev", ...options, dir: path.resolve(options.dir) };
        const layout = new Layout(o.dir);
        fs.mkdirSync(o.dir, { recursive: true, mode: 0o755 });
        // Before anything else is done to the directory: a second launcher stops here, touching nothing.
        const lock = claimLauncherLock(o.dir);
        let p: LocalPlatform | undefined;
        try {
            const log = o.log ?? ((l: string) => console.log(l));
            // Containers' memory and CPU limits, enforced by the kernel where cgroups can be made.
            const cgroups = Cgroups.open(o.dir);
            if ("unavailable" in cgroups) log(`memory and CPU limits are not enforced: ${cgroups.unavailable}`);
            const supervisor = new Supervisor(layout.logs, layout.pids, "unavailable" in cgroups ? undefined : cgroups);
            for (const s of await supervisor.stopLeftovers(o.dir)) log(`stopped ${s}, left running by an earlier launcher`);
            // The control plane's build (cold: about 1,000 CPU-seconds) goes on while the other tools install.
            if (!o.tools) startKubernetesBuild();
            const tools = o.tools ?? ensureLocalTools();
            const seed = persistentSeed(o.dir);
            const key = `${o.stack}/${seed}`;
            if (!renders.has(key)) renders.set(key, renderStack(o.stack, seed));
            const stack = await renders.get(key)!;
            // The rendered objects beside the processes, secrets shown, so owner-only.
            writeManifests(stack.objects, path.join(o.dir, "rendered"), { fresh: true, private: true });
            p = new LocalPlatform(o, layout, supervisor, tools, stack);
            p.lock = lock;
            await p.bringUp();
        } catch (e) {
            await p?.stop();
            lock.release();
            throw e;
        }
        return p;
    }

    private async bringUp(): Promise<void> {
        const { stack } = this;
        const serviceObjs = stack.find("Service") as any[];
        const keys = serviceObjs.flatMap((s) => (s.spec.ports as { port: number }[]).map((p) => servicePortKey(s, p.port)));
        this.ports = await this.layout.ports([...keys, "ingress", "prometheus"]);
        this.services = serviceObjs.map((s) => ({
            name: s.metadata.name,
            namespace: s.metadata.namespace,
            ports: (s.spec.ports as { name?: string; port: number }[]).map((p) => ({ name: p.name, port: p.port, localPort: this.ports[servicePortKey(s, p.port)] })),
        }));
        const steps = [
            () => this.startCluster(),
            () => this.startPostgres(),
            () => this.startMinio(),
            () => this.runJob(workloadOf(stack, "Job", OBJECT_STORE).name),
            () => this.runJob(workloadOf(stack, "Job", TRACKING_SERVER).name),
            () => this.startTracking(),
            () => this.startIngress(),
            () => this.startPrometheus(),
        ];
        for (const step of steps) {
            if (this.options.signal?.aborted) throw new Error("interrupted while starting");
            await step();
        }
        const hasRuntime = stack.find("ServingRuntime").length + stack.find("ClusterServingRuntime").length > 0;
        const serving = this.options.serving ?? hasRuntime;
        const controller = workloadsOf(stack, "Deployment", DEPLOY_CONTROLLER).length > 0;
        if (serving) this.startServing();
        if (controller) await this.startController();
    }

    /**
     * The process context of a pod's container: its volumes laid out under .local/ (the projected token
     * and namespace from `identity`), Services on loopback.
     */
    private prepare(podName: string, kind: string, name: string, container: string, claims: Record<string, string> = {}, owner?: Owner, identity?: PodIdentity) {
        const pod = this.stack.podTemplate(kind, name);
        const c = [...(pod.spec.initContainers ?? []), ...pod.spec.containers].find((x) => x.name === container)!;
        const dirs = this.layout.materialize(podName, localVolumes(pod.spec, this.stack, claims, identity), owner);
        const ctx = this.context(podName, componentOf(pod.metadata?.labels), c, dirs);
        return { pod, container: c, dirs, ctx, spec: containerProcess(c, ctx) };
    }

    private context(podName: string, component: string, c: Container, dirs: Record<string, string>): ContainerContext {
        const mounts = localMounts(c, dirs);
        const mountTree = this.layout.mountTree(podName, c.name, mounts);
        return { stack: this.stack, component, services: this.services, mounts, mountTree, tools: this.tools, defaultCwd: this.layout.pod(podName) };
    }

    private graceMs(kind: string, name: string): number {
        return (this.stack.podTemplate(kind, name).spec.terminationGracePeriodSeconds ?? 30) * 1000;
    }

    private async startPostgres(): Promise<void> {
        const { name, container } = workloadOf(this.stack, "StatefulSet", DATABASE);
        const owner = postgresOwner();
        const claims = claimsOf(this.stack, name);
        const { pod, ctx, spec, dirs } = this.prepare(`${name}-0`, "StatefulSet", name, container.name, claims, owner);
        const port = localPortsFor(pod.metadata?.labels ?? {}, container, this.stack, this.services)[5432];
        const socketDir = ctx.mounts.find((m) => m.mountPath === POSTGRES_SOCKET_DIR)?.localPath;
        if (!port || !socketDir) throw new Error(`StatefulSet ${name}: no Service port or no ${POSTGRES_SOCKET_DIR} volume`);
        if (owner) checkReachable(path.dirname(spec.env.PGDATA), owner);
        const preStop = container.lifecycle?.preStop?.exec?.command;
        const pg = await startLocalPostgres({
            name,
            spec,
            port,
            socketDir,
            pgBin: this.tools.pgBin,
            supervisor: this.supervisor,
            owner,
            graceMs: this.graceMs("StatefulSet", name),
            limits: limitsOf(container),
            disk: diskLimitsOf(pod.spec, dirs),
            preStop,
            log: this.log,
            signal: this.options.signal,
        });
        this.processes.postgres = pg.process;
        this.database = pg.database;
    }

    private async startMinio(): Promise<void> {
        const { name, container } = workloadOf(this.stack, "StatefulSet", OBJECT_STORE);
        const { pod, spec, dirs } = this.prepare(`${name}-0`, "StatefulSet", name, container.name, claimsOf(this.stack, name));
        const port = Object.values(localPortsFor(pod.metadata?.labels ?? {}, container, this.stack, this.services))[0];
        this.processes.minio = this.supervisor.start("minio", minioServer(spec, port), { graceMs: this.graceMs("StatefulSet", name), limits: limitsOf(container), disk: diskLimitsOf(pod.spec, dirs) });
        await waitUntil("minio", async () => (await httpStatus(`http://127.0.0.1:${port}/minio/health/ready`)) === 200, 120_000, () => tail(this.processes.minio.logFile), this.options.signal);
    }

    /** Runs a Job's pod to completion; its backoffLimit is the number of retries. */
    async runJob(name: string, kind: "Job" | "CronJob" = "Job"): Promise<void> {
        const obj = this.stack.get(kind, name) as any;
        const jobSpec = kind === "CronJob" ? obj.spec.jobTemplate.spec : obj.spec;
        const pod = this.stack.podTemplate(kind, name);
        const podName = kind === "CronJob" ? `${name}-manual` : name;
        const dirs = this.layout.materialize(podName, localVolumes(pod.spec, this.stack));
        // Init containers first, then the containers (one each here), all on the same volumes.
        for (const c of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) {
            const ctx = this.context(podName, componentOf(pod.metadata?.labels), c, dirs);
            this.log(`job ${name}: running ${c.name}`);
            await this.supervisor.run(`${podName}-${c.name}`, containerProcess(c, ctx), { retries: Math.min(jobSpec.backoffLimit ?? 6, 6), retryDelayMs: 2000, limits: limitsOf(c) });
        }
    }

    /**
     * Runs the backup CronJob's pod once (pg_dump, then the upload script with mc against the local
     * MinIO) and returns the object name it uploaded.
     */
    async runBackup(): Promise<string> {
        const cron = this.stack.find("CronJob", (o) => componentOf(o.metadata.labels as Record<string, string>) === DATABASE_BACKUP)[0];
        if (!cron) throw new Error("the stack has no backup CronJob");
        await this.runJob(cron.metadata.name, "CronJob");
        const pod = this.stack.podTemplate("CronJob", cron.metadata.name);
        const upload = path.join(this.layout.logs, `${cron.metadata.name}-manual-${pod.spec.containers[0].name}.log`);
        const names = [...fs.readFileSync(upload, "utf8").matchAll(/^uploaded (\S+) to /gm)].map((m) => m[1]);
        if (!names.length) throw new Error(`the backup Job printed no "uploaded …" line:\n${tail(upload)}`);
        return names[names.length - 1];
    }

    private async startTracking(): Promise<void> {
        const { name, container } = workloadOf(this.stack, "Deployment", TRACKING_SERVER);
        const { pod, spec, dirs } = this.prepare(`${name}-0`, "Deployment", name, container.name);
        const port = localPortsFor(pod.metadata?.labels ?? {}, container, this.stack, this.services)[container.ports![0].containerPort];
        const edgeOrigins = [new URL(this.uiUrl).origin, `http://${ingressRoutes(this.stack).host}:${this.ports.ingress}`];
        this.processes.tracking = this.supervisor.start("tracking", trackingServer(spec, port, edgeOrigins), { graceMs: this.graceMs("Deployment", name), limits: limitsOf(container), disk: diskLimitsOf(pod.spec, dirs) });
        await waitUntil("tracking server", async () => (await httpStatus(`http://127.0.0.1:${port}/health`)) === 200, 180_000, () => tail(this.processes.tracking.logFile), this.options.signal);
    }

    private async startIngress(): Promise<void> {
        const { routes, authSecret } = ingressRoutes(this.stack);
        const htpasswd = this.stack.secretData(authSecret).auth;
        const logFd = fs.openSync(path.join(this.layout.logs, "ingress-nginx.log"), "a");
        try {
            this.nginx = await startNginx({
                htpasswd,
                routes: routes.map(({ service, ...r }) => ({ ...r, upstreamPort: this.servicePort(service.name, service.port) })),
                port: this.ports.ingress,
                extraAddresses: this.options.edgeAddresses,
                dir: this.layout.pod("ingress-nginx"),
                stderrFd: logFd,
                bin: this.tools.nginx,
            });
        } finally {
            fs.closeSync(logFd);
        }
        fs.writeFileSync(path.join(this.layout.pids, "ingress-nginx.pid"), `${this.nginx.pid}\n`);
        this.login = ingressLogin(this.stack);
        const auth = { authorization: `Basic ${Buffer.from(`${this.login.user}:${this.login.password}`).toString("base64")}` };
        await waitUntil("ingress", async () => (await httpStatus(`${this.uiUrl}/health`, auth)) === 200, 30_000);
    }

    private prometheusDirs() {
        const dir = this.layout.pod("prometheus");
        return { dir, targets: path.join(dir, "targets"), config: path.join(dir, "prometheus.yml"), rules: path.join(dir, "rules.yml") };
    }

    /** Writes the scrape jobs' file_sd target files (Prometheus re-reads them on change). */
    writeScrapeTargets(pods: LocalPod[]): void {
        const d = this.prometheusDirs();
        const { targets } = scrapeJobs(this.stack, this.services, pods, d.targets);
        for (const [file, groups] of Object.entries(targets)) {
            const tmp = path.join(d.targets, `.${file}.tmp`);
            fs.writeFileSync(tmp, JSON.stringify(groups, null, 2));
            fs.renameSync(tmp, path.join(d.targets, file));
        }
    }

    private async startPrometheus(): Promise<void> {
        const d = this.prometheusDirs();
        fs.rmSync(d.dir, { recursive: true, force: true });
        fs.mkdirSync(d.targets, { recursive: true });
        const { jobs } = scrapeJobs(this.stack, this.services, [], d.targets);
        fs.writeFileSync(d.rules, ruleFile(this.stack));
        fs.writeFileSync(d.config, prometheusConfig(jobs, [d.rules]));
        this.writeScrapeTargets([]);
        for (const [what, args] of [["rules", ["check", "rules", d.rules]], ["config", ["check", "config", d.config]]] as const) {
            const r = spawnSync(this.tools.promtool, args, { encoding: "utf8" });
            if (r.status !== 0) throw new Error(`promtool check ${what} failed on the rendered monitoring objects:\n${r.stdout}${r.stderr}`);
        }
        const data = this.layout.claim("prometheus");
        fs.mkdirSync(data, { recursive: true });
        const spec: ProcessSpec = {
            argv: [this.tools.prometheus, `--config.file=${d.config}`, `--storage.tsdb.path=${data}`, `--web.listen-address=127.0.0.1:${this.ports.prometheus}`, "--web.enable-lifecycle"],
            env: { PATH: "/usr/bin:/bin" },
            cwd: d.dir,
        };
        this.processes.prometheus = this.supervisor.start("prometheus", spec, { graceMs: 30_000 });
        await waitUntil("prometheus", async () => (await httpStatus(`${this.prometheusUrl}/-/ready`)) === 200, 60_000, () => tail(this.processes.prometheus.logFile), this.options.signal);
    }

    /**
     * The real API server with the stack applied as `pulumi up` would (what changed since the last
     * start); its etcd keeps what the controller creates and patches across restarts, in data/.
     */
    private async startCluster(): Promise<void> {
        this.cluster = await LocalCluster.start({ dir: this.layout.claim("kubernetes"), order: this.stack.order, log: this.log, signal: this.options.signal });
        this.log(`kubernetes: ${this.cluster.server} (kubectl --kubeconfig ${this.cluster.kubeconfig} get all -n ${this.stack.namespace})`);
    }

    /**
     * The deploy controller as its Deployment runs it: node on the bundle from its ConfigMap, with the
     * projected token accepted by the local API, and its config.json mapped (deployControllerConfig).
     */
    private async startController(): Promise<void> {
        const { name, container } = workloadOf(this.stack, "Deployment", DEPLOY_CONTROLLER);
        const podName = `${name}-0`;
        const namespace = this.stack.namespace;
        const serviceAccount = this.stack.podTemplate("Deployment", name).spec.serviceAccountName ?? "default";
        // A token of the pod's ServiceAccount, as the kubelet projects it (TokenRequest, an hour), renewed
        // well before it expires as the kubelet does.
        const token = () => this.cluster!.serviceAccountToken(namespace, serviceAccount, 3600);
        const { pod, ctx, spec, dirs } = this.prepare(podName, "Deployment", name, container.name, {}, undefined, { token: await token(), namespace, ca: this.cluster!.ca });
        const ports = localPortsFor(pod.metadata?.labels ?? {}, container, this.stack, this.services);
        const portNamed = (n: string) => ports[container.ports?.find((p) => p.name === n)?.containerPort ?? -1];
        const metricsPort = portNamed("metrics");
        if (metricsPort === undefined) throw new Error(`Deployment ${name}: no Service targets its metrics port`);
        const rendered = fs.readFileSync(spec.argv[spec.argv.indexOf("--config") + 1], "utf8");
        const config = deployControllerConfig(rendered, { services: this.services, mounts: ctx.mounts, mountTree: ctx.mountTree, webhookPort: portNamed("webhook"), metricsPort, kubeApiUrl: this.cluster!.server });
        this.tokenRefresh = setInterval(() => {
            token().then((t) => fs.writeFileSync(config.kubernetes.tokenFile, t), (e) => this.log(`deploy controller: token renewal failed: ${(e as Error).message}`));
        }, 20 * 60_000);
        this.tokenRefresh.unref();
        const configFile = path.join(this.layout.pod(podName), "config.local.json");
        fs.writeFileSync(configFile, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
        this.followed = (config.models as { registeredModel: string; alias: string }[]).map((m) => `${m.registeredModel}@${m.alias}`);
        this.processes.controller = this.supervisor.start("deploy-controller", { ...spec, argv: replaceFlagValue(spec.argv, "--config", configFile) }, { graceMs: this.graceMs("Deployment", name), limits: limitsOf(container), disk: diskLimitsOf(pod.spec, dirs) });
        await waitUntil(
            "deploy controller",
            async () => (await httpStatus(`http://127.0.0.1:${metricsPort}/healthz`)) === 200,
            60_000,
            () => tail(this.processes.controller.logFile),
            this.options.signal,
        );
        this.log(`deploy controller: following ${this.followed.join(", ")}; metrics at http://127.0.0.1:${metricsPort}/metrics`);
    }

    private startServing(): void {
        this.serving = new ServingWatcher({
            stack: this.stack,
            services: this.services,
            tools: this.tools,
            layout: this.layout,
            supervisor: this.supervisor,
            inferenceServices: {
                list: () => this.cluster!.inferenceServices(this.stack.namespace),
                onChange: (f) => this.cluster!.watchInferenceServices(this.stack.namespace, f),
            },
            allocatePorts: (keys) => this.layout.ports(keys),
            onChange: (pods) => this.writeScrapeTargets(pods),
            log: this.log,
        });
        this.serving.start();
    }

    /** Stops everything this platform started (model servers, ingress, Prometheus, tracking, MinIO, PostgreSQL). */
    async stop(): Promise<void> {
        if (this.stopped) return;
        this.stopped = true;
        // The controller first: it must not see its API server go away under it.
        clearInterval(this.tokenRefresh);
        await this.processes.controller?.stop();
        await this.serving?.stop();
        await this.cluster?.stop();
        await this.nginx?.stop();
        fs.rmSync(path.join(this.layout.pids, "ingress-nginx.pid"), { force: true });
        await this.supervisor.stopAll();
        this.supervisor.cgroups?.remove();
        this.lock?.release();
    }
}

/** PVC name per volumeClaimTemplate, as the StatefulSet controller names them for ordinal 0. */
function claimsOf(stack: RenderedStack, statefulSet: string): Record<string, string> {
    const sts = stack.get("StatefulSet", statefulSet) as any;
    return Object.fromEntries((sts.spec.volumeClaimTemplates ?? []).map((t: any) => [t.metadata.name, `${t.metadata.name}-${statefulSet}-0`]));
}

/** PostgreSQL refuses to run as root: then it runs as Debian's `postgres` user. */
function postgresOwner(): Owner | undefined {
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
