// The local tier's node: the part of a kubelet the platform needs, against the real API server. It
// registers a Node and keeps it Ready (a status heartbeat), binds each Pending PersistentVolumeClaim to
// a local directory (a hostPath PersistentVolume made for that claim, as a static provisioner would),
// runs the Pods the scheduler binds to it as processes (a PodRuntime maps a pod to local programs; the
// Supervisor runs them), runs their startup, readiness and liveness probes, and writes their status
// back: Running and Ready, restarts and the last termination (OOMKilled, Evicted, Error), Succeeded or
// Failed with the exit code for pods that do not restart. A pod being deleted is stopped within its
// grace period and then removed, as the kubelet finishes a deletion; its controller makes the next one.
import { spawn } from "child_process";
import { createHash } from "crypto";
import * as net from "net";
import * as os from "os";
import { KubeClient, KubeError } from "../cluster/kubeClient";
import type { ProcessSpec } from "./mapping";
import type { Container, PodSpec } from "./stack";
import { Managed, sleep, StartOptions, Supervisor, Termination } from "./supervisor";

export interface Pod {
    metadata: { name: string; namespace: string; uid: string; labels?: Record<string, string>; deletionTimestamp?: string; deletionGracePeriodSeconds?: number; ownerReferences?: { kind: string; name: string }[] };
    spec: PodSpec & { nodeName?: string; initContainers?: Container[] };
    status?: { phase?: string };
}

export interface PreparedContainer {
    name: string;
    spec: ProcessSpec;
    options: StartOptions;
    /** Run once the process started, before its probes (lifecycle.postStart: the container is not started until it returns). */
    postStart?: () => Promise<void>;
}

/** A pod made ready to run: its containers as processes, and where its container ports listen. */
export interface PreparedPod {
    init: PreparedContainer[];
    containers: PreparedContainer[];
    /** containerPort → the loopback port its process listens on (a probe's port). */
    ports: Record<number, number>;
    /** A probe's exec command as a process of that container. */
    exec(container: string, command: string[]): ProcessSpec;
    /** Called once the pod is gone. */
    cleanup?(): void;
}

export interface PodRuntime {
    /** `claims`: the pod's PersistentVolumeClaims by claim name, as the local directories their volumes are. */
    prepare(pod: Pod, claims: Record<string, string>): Promise<PreparedPod>;
}

export interface NodeAgentOptions {
    client: KubeClient;
    runtime: PodRuntime;
    supervisor: Supervisor;
    /** Where a claim's volume lives: a directory per claim, kept across runs. */
    volumeDir: (namespace: string, claim: string) => string;
    name?: string;
    log?: (line: string) => void;
    /** How often pods and claims are looked at. Default 1 s. */
    syncMs?: number;
}

/** What a kubelet reports when it has no better number: the machine's own. */
function capacity(): Record<string, string> {
    return { cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: "110", "ephemeral-storage": "100Gi" };
}

const HEARTBEAT_MS = 10_000;
export const NODE_NAME = "local-node";

export class NodeAgent {
    readonly name: string;
    private readonly pods = new Map<string, RunningPod>();
    private timer?: NodeJS.Timeout;
    private lastBeat = 0;
    private stopped = false;
    private syncing?: Promise<void>;

    constructor(private readonly o: NodeAgentOptions) {
        this.name = o.name ?? NODE_NAME;
    }

    private get log(): (l: string) => void {
        return this.o.log ?? (() => undefined);
    }

    /** Registers the node (kept if it exists: a restart finds its own Node) and starts syncing. */
    async start(): Promise<void> {
        const labels = { "kubernetes.io/hostname": this.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64" };
        try {
            await this.o.client.call("POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: this.name, labels } });
        } catch (e) {
            if (!(e instanceof KubeError && e.status === 409)) throw e;
        }
        await this.heartbeat();
        // The first look before returning: a pod left Ready by an earlier run is reported as starting again.
        await this.sync();
        const loop = async () => {
            this.syncing = this.sync().catch((e) => this.log(`node ${this.name}: ${(e as Error).message}`));
            await this.syncing;
            if (!this.stopped) this.timer = setTimeout(loop, this.o.syncMs ?? 1000);
        };
        this.timer = setTimeout(loop, this.o.syncMs ?? 1000);
    }

    private async heartbeat(): Promise<void> {
        const now = new Date().toISOString();
        const ready = { type: "Ready", status: "True", reason: "KubeletReady", message: "the local tier's node agent is posting ready status", lastHeartbeatTime: now, lastTransitionTime: now };
        const c = capacity();
        await this.o.client.call(
            "PATCH",
            `/api/v1/nodes/${this.name}/status`,
            { status: { capacity: c, allocatable: c, conditions: [ready], addresses: [{ type: "InternalIP", address: "127.0.0.1" }, { type: "Hostname", address: this.name }] } },
            "application/strategic-merge-patch+json",
        );
        this.lastBeat = Date.now();
    }

    private async sync(): Promise<void> {
        if (Date.now() - this.lastBeat > HEARTBEAT_MS) await this.heartbeat();
        await this.bindClaims();
        const listed = (await this.o.client.call("GET", `/api/v1/pods?fieldSelector=spec.nodeName%3D${this.name}`)).body.items as Pod[];
        const seen = new Set<string>();
        for (const pod of listed) {
            const uid = pod.metadata.uid;
            seen.add(uid);
            const running = this.pods.get(uid);
            if (pod.metadata.deletionTimestamp) {
                if (running) running.terminate(this.o.client, pod.metadata.deletionGracePeriodSeconds);
                // Nothing runs for it here: the kubelet's final delete (grace 0, this pod's uid only).
                else await deletePod(this.o.client, pod).catch(() => undefined);
            } else if (!running && pod.status?.phase !== "Succeeded" && pod.status?.phase !== "Failed") {
                const r = new RunningPod(pod, this.o, this.log);
                this.pods.set(uid, r);
                r.start();
            }
        }
        for (const [uid, r] of this.pods) {
            if (!seen.has(uid) && !r.terminating) r.terminate(undefined, 0);
            if (r.gone) this.pods.delete(uid);
            else if (!r.terminating) await r.report(this.o.client).catch((e) => this.log(`pod ${r.id}: status not written: ${(e as Error).message}`));
        }
    }

    /** Each Pending claim without a volume gets a hostPath PersistentVolume of its size, class and access modes, bound to it alone. */
    private async bindClaims(): Promise<void> {
        const claims = (await this.o.client.call("GET", "/api/v1/persistentvolumeclaims")).body.items as any[];
        for (const c of claims.filter((x) => x.status?.phase === "Pending" && !x.spec.volumeName)) {
            const pv = {
                apiVersion: "v1",
                kind: "PersistentVolume",
                metadata: { name: `local-${c.metadata.uid}`, labels: { "mlflow-platform/local-volume": "true" } },
                spec: {
                    capacity: { storage: c.spec.resources?.requests?.storage ?? "1Gi" },
                    accessModes: c.spec.accessModes ?? ["ReadWriteOnce"],
                    persistentVolumeReclaimPolicy: "Retain",
                    storageClassName: c.spec.storageClassName ?? "",
                    volumeMode: c.spec.volumeMode ?? "Filesystem",
                    claimRef: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: c.metadata.namespace, name: c.metadata.name, uid: c.metadata.uid },
                    hostPath: { path: this.o.volumeDir(c.metadata.namespace, c.metadata.name), type: "DirectoryOrCreate" },
                },
            };
            try {
                await this.o.client.call("POST", "/api/v1/persistentvolumes", pv);
                this.log(`node ${this.name}: volume for claim ${c.metadata.namespace}/${c.metadata.name} at ${pv.spec.hostPath.path}`);
            } catch (e) {
                if (!(e instanceof KubeError && e.status === 409)) throw e;
            }
        }
    }

    /** The pods the node runs now (not those being stopped), with their containers' processes by name. */
    running(): { pod: Pod; containers: Record<string, Managed> }[] {
        return [...this.pods.values()].filter((p) => !p.terminating).map((p) => ({ pod: p.pod, containers: p.containers() }));
    }

    /** Stops syncing and every pod's processes (the Pod objects stay, as with a node that goes down). */
    async stop(): Promise<void> {
        this.stopped = true;
        clearTimeout(this.timer);
        await this.syncing;
        await Promise.all([...this.pods.values()].map((p) => p.stopProcesses()));
    }
}

async function deletePod(client: KubeClient, pod: Pod): Promise<void> {
    await client.call("DELETE", `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`, { apiVersion: "v1", kind: "DeleteOptions", gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid } });
}

type Probe = {
    httpGet?: { path?: string; port: number | string; scheme?: string; httpHeaders?: { name: string; value: string }[] };
    tcpSocket?: { port: number | string };
    exec?: { command: string[] };
    initialDelaySeconds?: number;
    periodSeconds?: number;
    timeoutSeconds?: number;
    failureThreshold?: number;
    successThreshold?: number;
};

/** One probe of one container, run on its period; `ok` as the kubelet counts thresholds. */
class Prober {
    ok: boolean;
    private successes = 0;
    private failures = 0;
    private timer?: NodeJS.Timeout;
    lastFailure = "";

    constructor(
        private readonly probe: Probe,
        private readonly check: (p: Probe) => Promise<void>,
        initial: boolean,
        private readonly onChange: (ok: boolean) => void = () => undefined,
    ) {
        this.ok = initial;
    }

    start(): void {
        const period = (this.probe.periodSeconds ?? 10) * 1000;
        const tick = async () => {
            try {
                await this.check(this.probe);
                this.failures = 0;
                if (++this.successes >= (this.probe.successThreshold ?? 1) && !this.ok) {
                    this.ok = true;
                    this.onChange(true);
                }
            } catch (e) {
                this.lastFailure = (e as Error).message;
                this.successes = 0;
                if (++this.failures >= (this.probe.failureThreshold ?? 3) && this.ok) {
                    this.ok = false;
                    this.onChange(false);
                }
            }
            this.timer = setTimeout(tick, period);
            this.timer.unref();
        };
        this.timer = setTimeout(tick, (this.probe.initialDelaySeconds ?? 0) * 1000);
        this.timer.unref();
    }

    /** Starts counting afresh (a restarted container). */
    reset(ok: boolean): void {
        this.ok = ok;
        this.successes = this.failures = 0;
    }

    stop(): void {
        clearTimeout(this.timer);
    }
}

interface ContainerRun {
    name: string;
    managed: Managed;
    postStarting?: boolean;
    ready?: Prober;
    live?: Prober;
    startup?: Prober;
}

/** One pod on the node: its init containers in turn, then its containers, with their probes and status. */
class RunningPod {
    readonly id: string;
    terminating = false;
    gone = false;
    private initDone = false;
    private prepared?: PreparedPod;
    private runs: ContainerRun[] = [];
    private failure?: { reason: string; message: string };
    private lastReport = "";
    private readonly startTime = new Date().toISOString();
    private initRuns: Managed[] = [];

    constructor(
        readonly pod: Pod,
        private readonly o: NodeAgentOptions,
        private readonly log: (l: string) => void,
    ) {
        this.id = `${pod.metadata.namespace}/${pod.metadata.name}`;
    }

    /** 10.244.x.y from the pod's uid: stable for the pod, spread over the node's pod range. */
    private get podIP(): string {
        const h = createHash("sha256").update(this.pod.metadata.uid).digest();
        return `10.244.${h[0]}.${(h[1] % 253) + 1}`;
    }

    private get policy(): "Always" | "OnFailure" | "Never" {
        return (this.pod.spec.restartPolicy as "Always" | "OnFailure" | "Never") ?? "Always";
    }

    start(): void {
        this.run().catch((e) => {
            this.failure = { reason: "RunContainerError", message: (e as Error).message };
            this.log(`pod ${this.id}: ${(e as Error).message}`);
        });
    }

    private async run(): Promise<void> {
        const claims: Record<string, string> = {};
        for (const v of this.pod.spec.volumes ?? []) {
            const claim = v.persistentVolumeClaim?.claimName;
            if (claim) claims[claim] = await this.claimDir(claim);
        }
        this.prepared = await this.o.runtime.prepare(this.pod, claims);
        for (const c of this.prepared.init) {
            // An init container runs to completion; a failed one is run again unless the pod never restarts.
            for (let attempt = 0; ; attempt++) {
                if (this.terminating) return;
                const m = this.o.supervisor.start(`${this.pod.metadata.name}-${c.name}`, c.spec, { ...c.options, restartPolicy: "Never" });
                this.initRuns.push(m);
                await m.exited();
                if (m.finished?.exitCode === 0) break;
                if (this.policy === "Never" || this.terminating) {
                    this.failure = { reason: "InitContainerFailed", message: `init container ${c.name} exited ${m.finished?.exitCode ?? "?"}` };
                    return;
                }
                await sleep(Math.min(10_000, 1000 * 2 ** attempt));
            }
        }
        this.initDone = true;
        if (this.terminating) return;
        const byName = new Map([...(this.pod.spec.containers ?? [])].map((c) => [c.name, c]));
        for (const c of this.prepared.containers) {
            const managed = this.o.supervisor.start(`${this.pod.metadata.name}-${c.name}`, c.spec, { ...c.options, restartPolicy: this.policy });
            const def = byName.get(c.name) as Container & { readinessProbe?: Probe; livenessProbe?: Probe; startupProbe?: Probe };
            const run: ContainerRun = { name: c.name, managed };
            const check = (p: Probe) => this.probe(c.name, def, p);
            if (def?.startupProbe) run.startup = new Prober(def.startupProbe, check, false, (ok) => ok && this.afterStartup(run));
            if (def?.readinessProbe) run.ready = new Prober(def.readinessProbe, check, false);
            if (def?.livenessProbe)
                run.live = new Prober(def.livenessProbe, check, true, (ok) => {
                    if (ok) return;
                    this.log(`pod ${this.id}: container ${c.name} failed its liveness probe (${run.live!.lastFailure}); killing it`);
                    managed.kill();
                    run.live!.reset(true);
                    run.ready?.reset(false);
                });
            this.runs.push(run);
            const probe = () => (run.startup ? run.startup.start() : this.afterStartup(run));
            if (!c.postStart) probe();
            else {
                run.postStarting = true;
                c.postStart().then(
                    () => {
                        run.postStarting = false;
                        probe();
                    },
                    (e) => {
                        // As the kubelet: a failed postStart hook kills the container; its restartPolicy decides.
                        this.log(`pod ${this.id}: container ${c.name}: postStart failed: ${(e as Error).message}`);
                        managed.kill();
                        run.postStarting = false;
                        probe();
                    },
                );
            }
        }
    }

    containers(): Record<string, Managed> {
        return Object.fromEntries(this.runs.map((r) => [r.name, r.managed]));
    }

    private afterStartup(run: ContainerRun): void {
        run.ready?.start();
        run.live?.start();
    }

    private async claimDir(claim: string): Promise<string> {
        const ns = this.pod.metadata.namespace;
        const pvc = (await this.o.client.call("GET", `/api/v1/namespaces/${ns}/persistentvolumeclaims/${claim}`)).body;
        const pv = (await this.o.client.call("GET", `/api/v1/persistentvolumes/${pvc.spec.volumeName}`)).body;
        if (!pv.spec.hostPath?.path) throw new Error(`claim ${claim}: its volume ${pv.metadata.name} is not a local directory`);
        return pv.spec.hostPath.path;
    }

    private portOf(def: Container, port: number | string): number {
        const containerPort = typeof port === "number" ? port : def.ports?.find((p) => p.name === port)?.containerPort;
        if (containerPort === undefined) throw new Error(`no container port named ${port}`);
        return this.prepared!.ports[containerPort] ?? containerPort;
    }

    private async probe(container: string, def: Container, p: Probe): Promise<void> {
        const timeoutMs = (p.timeoutSeconds ?? 1) * 1000;
        if (p.httpGet) {
            if ((p.httpGet.scheme ?? "HTTP") !== "HTTP") throw new Error(`${p.httpGet.scheme} probes are not run locally`);
            const headers = Object.fromEntries((p.httpGet.httpHeaders ?? []).map((h) => [h.name, h.value]));
            const res = await fetch(`http://127.0.0.1:${this.portOf(def, p.httpGet.port)}${p.httpGet.path ?? "/"}`, { headers, signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
            await res.arrayBuffer();
            // As the kubelet: any status from 200 to 399 succeeds.
            if (res.status < 200 || res.status >= 400) throw new Error(`HTTP probe failed with statuscode: ${res.status}`);
        } else if (p.tcpSocket) {
            const port = this.portOf(def, p.tcpSocket.port);
            await new Promise<void>((resolve, reject) => {
                const s = net.connect({ host: "127.0.0.1", port, timeout: timeoutMs }, () => (s.destroy(), resolve()));
                s.once("error", reject);
                s.once("timeout", () => (s.destroy(), reject(new Error("timeout"))));
            });
        } else if (p.exec) {
            const spec = this.prepared!.exec(container, p.exec.command);
            await new Promise<void>((resolve, reject) => {
                const child = spawn(spec.argv[0], spec.argv.slice(1), { cwd: spec.cwd, env: spec.env, stdio: "ignore" });
                const timer = setTimeout(() => child.kill("SIGKILL"), Math.max(timeoutMs, 1000));
                child.once("error", (e) => (clearTimeout(timer), reject(e)));
                child.once("exit", (code) => (clearTimeout(timer), code === 0 ? resolve() : reject(new Error(`command exited ${code}`))));
            });
        } else throw new Error("only httpGet, tcpSocket and exec probes are run locally");
    }

    /** The pod's status as the kubelet reports it. */
    status(): Record<string, unknown> {
        const now = new Date().toISOString();
        const terminated = (t: Termination, startedAt?: Date) => ({
            terminated: { exitCode: t.exitCode ?? 137, reason: t.reason, ...(t.message ? { message: t.message } : {}), ...(t.signal ? { signal: 9 } : {}), startedAt: startedAt?.toISOString() ?? this.startTime, finishedAt: now },
        });
        const containerStatuses = (this.pod.spec.containers ?? []).map((def) => {
            const run = this.runs.find((r) => r.name === def.name);
            const m = run?.managed;
            const state = !m
                ? { waiting: { reason: this.failure ? "CreateContainerError" : this.initDone ? "ContainerCreating" : "PodInitializing", ...(this.failure ? { message: this.failure.message } : {}) } }
                : m.running
                  ? { running: { startedAt: m.startedAt?.toISOString() } }
                  : m.finished
                    ? terminated(m.finished, m.startedAt)
                    : { waiting: { reason: "CrashLoopBackOff", message: `back-off restarting failed container ${def.name}` } };
            const started = !!m?.running && !run?.postStarting && (run?.startup?.ok ?? true);
            const ready = started && (run?.ready?.ok ?? true);
            return {
                name: def.name,
                image: def.image,
                imageID: "",
                ready,
                started,
                restartCount: m?.restarts ?? 0,
                state,
                lastState: m?.lastTermination && m.restarts > 0 && !m.finished ? terminated(m.lastTermination) : {},
            };
        });
        const finished = containerStatuses.length > 0 && containerStatuses.every((s) => "terminated" in s.state);
        const failedExit = containerStatuses.some((s) => "terminated" in s.state && (s.state as any).terminated.exitCode !== 0);
        const phase = this.failure ? "Failed" : finished ? (failedExit ? "Failed" : "Succeeded") : this.runs.length ? "Running" : "Pending";
        const allReady = containerStatuses.every((s) => s.ready);
        const cond = (type: string, ok: boolean, reason?: string) => ({ type, status: ok ? "True" : "False", lastTransitionTime: now, ...(reason && !ok ? { reason } : {}) });
        const done = phase === "Succeeded" || phase === "Failed";
        return {
            phase,
            ...(this.failure ? { reason: this.failure.reason, message: this.failure.message } : {}),
            hostIP: "127.0.0.1",
            hostIPs: [{ ip: "127.0.0.1" }],
            // An address of the pod network, as a CNI plugin would give it: EndpointSlices refuse loopback
            // addresses. Nothing listens on it; the local Service proxy routes by the pod's uid.
            ...(this.runs.length ? { podIP: this.podIP, podIPs: [{ ip: this.podIP }] } : {}),
            startTime: this.startTime,
            conditions: [
                cond("PodScheduled", true),
                cond("Initialized", this.initDone, "ContainersNotInitialized"),
                cond("ContainersReady", allReady && !done, done ? "PodCompleted" : "ContainersNotReady"),
                cond("Ready", allReady && !done, done ? "PodCompleted" : "ContainersNotReady"),
            ],
            initContainerStatuses: (this.pod.spec.initContainers ?? []).map((def, i) => {
                const m = this.initRuns.filter((x) => x.name === `${this.pod.metadata.name}-${def.name}`).pop();
                return { name: def.name, image: def.image, imageID: "", ready: m?.finished?.exitCode === 0, restartCount: Math.max(0, this.initRuns.filter((x) => x.name === m?.name).length - 1), state: m?.finished ? terminated(m.finished, m.startedAt) : m ? { running: { startedAt: m.startedAt?.toISOString() } } : { waiting: { reason: i === 0 ? "PodInitializing" : "Waiting" } } };
            }),
            containerStatuses,
        };
    }

    /** Writes the status when it changed (times aside); a pod that is done is then left alone. */
    async report(client: KubeClient): Promise<void> {
        const status = this.status();
        const key = JSON.stringify(status, (k, v) => (k === "lastTransitionTime" || k === "finishedAt" ? undefined : v));
        if (key === this.lastReport) return;
        const { metadata } = this.pod;
        await client.call("PATCH", `/api/v1/namespaces/${metadata.namespace}/pods/${metadata.name}/status`, { status }, "application/merge-patch+json");
        this.lastReport = key;
        if (status.phase === "Succeeded" || status.phase === "Failed") await this.stopProcesses();
    }

    /** Stops the pod within `graceSeconds` (its own terminationGracePeriodSeconds by default), then deletes it when `client` is given. */
    terminate(client: KubeClient | undefined, graceSeconds?: number): void {
        if (this.terminating) return;
        this.terminating = true;
        this.stopProcesses(graceSeconds)
            .then(() => (client ? deletePod(client, this.pod) : undefined))
            .catch((e) => this.log(`pod ${this.id}: ${(e as Error).message}`))
            .finally(() => {
                this.gone = true;
                this.prepared?.cleanup?.();
            });
    }

    async stopProcesses(graceSeconds?: number): Promise<void> {
        for (const r of this.runs) [r.ready, r.live, r.startup].forEach((p) => p?.stop());
        const grace = graceSeconds ?? this.pod.spec.terminationGracePeriodSeconds ?? 30;
        await Promise.all([...this.runs.map((r) => r.managed), ...this.initRuns].map((m) => m.stop(grace * 1000)));
    }
}
