// The whole platform on one machine: renders the stack, applies it to a real Kubernetes control plane
// as `pulumi up` would, and lets Kubernetes run it: the controllers make the pods, the scheduler binds
// them to the local node, which runs them as processes on 127.0.0.1 (./cluster.ts, ./node.ts,
// ./runtime.ts). Beside it, what a cluster's add-ons would run: the ingress (nginx from the Ingress
// objects), Prometheus (from the ServiceMonitors and rules) and model serving (KServe's part, from the
// InferenceServices). Used by `npm run local` and by the end-to-end tests.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { COMPONENT as DATABASE } from "../../components/database";
import { COMPONENT as DATABASE_BACKUP } from "../../components/databaseBackup";
import { COMPONENT as DEPLOY_CONTROLLER } from "../../components/deployController";
import { COMPONENT as OBJECT_STORE } from "../../components/objectStore";
import { COMPONENT as TRACKING_SERVER } from "../../components/trackingServer";
import { MLFLOW_PREVIOUS_VERSION } from "../../components/images";
import { writeManifests } from "../lib/manifests";
import { startNginx, RunningNginx } from "../lib/nginx";
import { startKubernetesBuild } from "../cluster/controlPlane";
import { waitUntilReady } from "../cluster/readiness";
import { Cgroups } from "./cgroups";
import { LocalCluster } from "./cluster";
import { claimLauncherLock, LauncherLock } from "./lock";
import { Layout } from "./layout";
import { componentOf, LocalService, mlflowVersionOf, ProcessSpec, servicePortKey } from "./mapping";
import { LocalPod, prometheusConfig, ruleFile, scrapeJobs } from "./prometheus";
import { PlatformRuntime } from "./runtime";
import { ServingWatcher } from "./serving";
import { persistentSeed, RenderedStack, renderStack } from "./stack";
import { httpStatus, Managed, Supervisor, tail, waitUntil } from "./supervisor";
import { ensureLocalTools, LocalTools } from "./tools";
import { ingressLogin, ingressRoutes, workloadOf } from "./workloads";

export interface PlatformOptions {
    /** Stack to render. Default `dev`. */
    stack?: string;
    /** Directory of its stack file `Pulumi.<stack>.yaml`. Default: the project's. */
    stackDir?: string;
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
    nginx?: RunningNginx;
    serving?: ServingWatcher;
    /** The platform's Kubernetes API server, holding the applied stack (the InferenceServices among it). */
    cluster?: LocalCluster;
    /** Loopback ports by key (`svc/<name>/<port>`, `ingress`, `prometheus`). */
    ports: Record<string, number> = {};
    services: LocalService[] = [];
    login = { user: "", password: "" };
    private stopped = false;
    private lock?: LauncherLock;
    private runtime?: PlatformRuntime;
    private prometheus?: Managed;

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
            const key = `${o.stackDir ?? ""}/${o.stack}/${seed}`;
            if (!renders.has(key)) renders.set(key, renderStack(o.stack, seed, o.stackDir));
            const stack = await renders.get(key)!;
            // A stack on the previous supported MLflow (the upgrade spec starts on one) needs its venv too.
            if (mlflowVersionOf(workloadOf(stack, "Deployment", TRACKING_SERVER).container.image ?? "") === MLFLOW_PREVIOUS_VERSION) ensureLocalTools(["mlflow-previous"]);
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
        const steps = [() => this.startCluster(), () => this.startIngress(), () => this.startPrometheus()];
        for (const step of steps) {
            if (this.options.signal?.aborted) throw new Error("interrupted while starting");
            await step();
        }
        const hasRuntime = stack.find("ServingRuntime").length + stack.find("ClusterServingRuntime").length > 0;
        if (this.options.serving ?? hasRuntime) this.startServing();
        if (this.followed.length) this.log(`deploy controller: following ${this.followed.join(", ")}`);
    }

    /** The processes of the platform's long-running pods, by workload: the current pod's main container. */
    get processes(): Record<string, Managed> {
        const out: Record<string, Managed> = {};
        for (const { pod, containers } of this.cluster?.node?.running() ?? []) {
            const component = pod.metadata.labels?.["app.kubernetes.io/component"];
            for (const [name, [c, container]] of Object.entries(WORKLOAD_PROCESSES)) if (component === c && containers[container]) out[name] = containers[container];
        }
        if (this.prometheus) out.prometheus = this.prometheus;
        return out;
    }

    /** `<registered model>@<alias>` the deploy controller follows (empty without one). */
    get followed(): string[] {
        return this.runtime?.followed ?? [];
    }

    /** Env of the database, as the rendered clients get it, mapped to loopback (PG* and the password). */
    get database(): Record<string, string> {
        return this.runtime?.database ?? {};
    }

    /**
     * Runs a CronJob's Job now, as `kubectl create job --from=cronjob/<name>` does, and waits until the
     * Job controller reports it Complete; returns the pod's name.
     */
    async runJob(name: string, kind: "CronJob" = "CronJob"): Promise<string> {
        const job = `${name}-manual-${Date.now().toString(36)}`;
        const r = this.cluster!.controlPlane.kubectl(["-n", this.stack.namespace, "create", "job", job, `--from=${kind.toLowerCase()}/${name}`]);
        if (r.status !== 0) throw new Error(`kubectl create job --from=cronjob/${name}: ${r.stderr}`);
        this.log(`job ${job}: created from CronJob ${name}`);
        const object = { apiVersion: "batch/v1", kind: "Job", metadata: { name: job, namespace: this.stack.namespace } };
        await waitUntilReady(this.cluster!.client, object as any, { timeoutMs: 600_000, signal: this.options.signal });
        const pods = (await this.cluster!.client.call("GET", `/api/v1/namespaces/${this.stack.namespace}/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D${job}`)).body.items as any[];
        const done = pods.find((p) => p.status?.phase === "Succeeded");
        if (!done) throw new Error(`Job ${job} is Complete but none of its pods Succeeded`);
        return done.metadata.name;
    }

    /**
     * Runs the backup CronJob's Job once (pg_dump, then the upload script with mc against the local
     * MinIO) and returns the object name it uploaded.
     */
    async runBackup(): Promise<string> {
        const cron = this.stack.find("CronJob", (o) => componentOf(o.metadata.labels as Record<string, string>) === DATABASE_BACKUP)[0];
        if (!cron) throw new Error("the stack has no backup CronJob");
        const pod = await this.runJob(cron.metadata.name);
        const container = this.stack.podTemplate("CronJob", cron.metadata.name).spec.containers[0].name;
        const upload = path.join(this.layout.logs, `${pod}-${container}.log`);
        const names = [...fs.readFileSync(upload, "utf8").matchAll(/^uploaded (\S+) to /gm)].map((m) => m[1]);
        if (!names.length) throw new Error(`the backup Job printed no "uploaded …" line:\n${tail(upload)}`);
        return names[names.length - 1];
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
        const prometheus = this.supervisor.start("prometheus", spec, { graceMs: 30_000 });
        this.prometheus = prometheus;
        await waitUntil("prometheus", async () => (await httpStatus(`${this.prometheusUrl}/-/ready`)) === 200, 60_000, () => tail(prometheus.logFile), this.options.signal);
    }

    /**
     * The real control plane with the stack applied as `pulumi up` would (what changed since the last
     * start, each object once what it waits for is ready), its node running the pods the controllers
     * make and the scheduler binds, and the Service proxy in front of them. Its etcd keeps everything
     * across restarts, in data/; a restart finds the pods bound to its node and runs them again.
     */
    private async startCluster(): Promise<void> {
        const cluster = await LocalCluster.start({ dir: this.layout.claim("kubernetes"), log: this.log, signal: this.options.signal });
        this.cluster = cluster;
        this.log(`kubernetes: ${cluster.server} (kubectl --kubeconfig ${cluster.kubeconfig} get pods -n ${this.stack.namespace})`);
        this.runtime = new PlatformRuntime({
            stack: this.stack,
            services: this.services,
            layout: this.layout,
            tools: this.tools,
            supervisor: this.supervisor,
            client: cluster.client,
            server: cluster.server,
            ca: cluster.ca,
            token: (ns, sa) => cluster.serviceAccountToken(ns, sa, 3600),
            edgeOrigins: [new URL(this.uiUrl).origin, `http://${ingressRoutes(this.stack).host}:${this.ports.ingress}`],
            log: this.log,
        });
        const proxied = this.services.flatMap((s) => {
            const obj = this.stack.get("Service", s.name) as any;
            return obj.spec.type === "ExternalName" ? [] : s.ports.map((p) => ({ service: s.name, namespace: s.namespace, portName: p.name, localPort: p.localPort }));
        });
        await cluster.runNode({ runtime: this.runtime, supervisor: this.supervisor, volumeDir: (_ns, claim) => this.layout.claim(claim), proxied, endpointPort: this.runtime.endpointPort });
        await cluster.applyStack(this.stack.order, this.options.signal);
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
                writeStatus: (name, status) => this.cluster!.writeInferenceServiceStatus(this.stack.namespace, name, status),
            },
            allocatePorts: (keys) => this.layout.ports(keys),
            onChange: (pods) => this.writeScrapeTargets(pods),
            log: this.log,
        });
        this.serving.start();
    }

    /** Stops everything this platform started (model servers, the node's pods, the control plane, ingress, Prometheus). */
    async stop(): Promise<void> {
        if (this.stopped) return;
        this.stopped = true;
        await this.serving?.stop();
        // The pods before the control plane: the deploy controller must not see its API server go away under it.
        await this.cluster?.stop();
        await this.nginx?.stop();
        fs.rmSync(path.join(this.layout.pids, "ingress-nginx.pid"), { force: true });
        await this.supervisor.stopAll();
        this.supervisor.cgroups?.remove();
        this.lock?.release();
    }
}

/** The process `processes` names, by the component that owns the pod and the container's name. */
const WORKLOAD_PROCESSES: Record<string, [string, string]> = {
    postgres: [DATABASE, "postgres"],
    minio: [OBJECT_STORE, "minio"],
    tracking: [TRACKING_SERVER, "mlflow"],
    controller: [DEPLOY_CONTROLLER, "controller"],
};
