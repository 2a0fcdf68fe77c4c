// The local platform's Kubernetes: the real control plane (scripts/cluster/controlPlane.ts: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler at the pinned version, data under the
// platform's directory, kept across restarts), one node that runs the pods the scheduler binds to it
// (./node.ts) with the Service proxy in front of them (./serviceProxy.ts), and the rendered stack
// applied as `pulumi up` would (CRDs, dependency order and readiness waits, the provider's field
// manager, strict validation), only what changed since the last start re-applied, as Pulumi diffs
// against its state. The serving watcher reads the InferenceServices from it.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { describeObject, fieldManagerFor, OrderedObject } from "../cluster/applyOrder";
import { applyObjects, crdFiles, installCrds } from "../cluster/apply";
import { AuditedWrite, ControlPlane } from "../cluster/controlPlane";
import { KubeClient } from "../cluster/kubeClient";
import { waitUntilReady } from "../cluster/readiness";
import { NodeAgent, NodeAgentOptions } from "./node";
import { EndpointPorts, ProxiedPort, ServiceProxy } from "./serviceProxy";

const ISVC = { group: "serving.kserve.io", version: "v1beta1", plural: "inferenceservices" };
const POLL_MS = 1000;

export interface LocalClusterOptions {
    dir: string;
    log: (line: string) => void;
    signal?: AbortSignal;
}

export class LocalCluster {
    private listeners: (() => void)[] = [];
    private timer?: NodeJS.Timeout;
    private lastSeen = "";
    private stopped = false;
    node?: NodeAgent;
    proxy?: ServiceProxy;

    private constructor(
        readonly controlPlane: ControlPlane,
        readonly client: KubeClient,
        private readonly o: LocalClusterOptions,
    ) {}

    /** The admin kubeconfig: `kubectl --kubeconfig <it> get inferenceservices -n <namespace>`. */
    get kubeconfig(): string {
        return this.controlPlane.kubeconfig;
    }
    get server(): string {
        return this.controlPlane.server;
    }
    /** The pinned kubectl the installer built (any kubectl of a nearby version works too). */
    get kubectl(): string {
        return this.controlPlane.tools.kubectl;
    }
    /** PEM of the cluster CA (the `ca.crt` a pod's projected service-account volume holds). */
    get ca(): string {
        return this.controlPlane.access.ca;
    }
    /** Loopback ports the control plane listens on. */
    get ports(): Record<string, number> {
        return Object.fromEntries(Object.entries(this.controlPlane.ports).map(([k, v]) => [`kubernetes/${k}`, v]));
    }

    static async start(o: LocalClusterOptions): Promise<LocalCluster> {
        const cp = await ControlPlane.start({ dir: o.dir, auditWrites: [`${ISVC.group}/${ISVC.plural}`], log: o.log, signal: o.signal });
        const cluster = new LocalCluster(cp, cp.client(), o);
        try {
            await installCrds(cluster.client, crdFiles());
        } catch (e) {
            await cluster.stop();
            throw e;
        }
        return cluster;
    }

    /** Registers the node and starts running its pods, with the Service proxy on the Services' loopback ports. */
    async runNode(o: Omit<NodeAgentOptions, "client" | "log"> & { proxied: ProxiedPort[]; endpointPort: EndpointPorts }): Promise<void> {
        this.node = new NodeAgent({ ...o, client: this.client, log: (l) => this.o.log(`kubernetes: ${l}`) });
        await this.node.start();
        this.proxy = new ServiceProxy(this.client, o.proxied, o.endpointPort, (l) => this.o.log(`kubernetes: ${l}`));
        await this.proxy.start();
    }

    /**
     * Applies what changed (as `pulumi up`, waiting for what each object waits for), then waits until every
     * object of the stack is ready: on a restart, the pods the node runs again.
     */
    async applyStack(order: OrderedObject[], signal?: AbortSignal): Promise<void> {
        await this.applyChanged(order, path.join(this.o.dir, "applied.json"), this.o.log, signal);
        const started = Date.now();
        await Promise.all(order.map((x) => waitUntilReady(this.client, x.object, { signal, log: (l) => this.o.log(`kubernetes: ${l}`) })));
        this.o.log(`kubernetes: every object of the stack is ready (${((Date.now() - started) / 1000).toFixed(1)} s after the apply)`);
    }

    /**
     * Applies the objects whose rendered form differs from the last apply recorded in `stateFile` (all of
     * them on a fresh directory), in order; unchanged objects are not sent, as `pulumi up` sends nothing
     * for a resource without a diff.
     */
    private async applyChanged(order: OrderedObject[], stateFile: string, log: (l: string) => void, signal?: AbortSignal): Promise<void> {
        const state: Record<string, string> = fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, "utf8")) : {};
        const hash = (x: OrderedObject) => createHash("sha256").update(JSON.stringify(x.object)).update(fieldManagerFor(x)).digest("hex");
        const changed = order.filter((x) => state[describeObject(x.object)] !== hash(x));
        if (!changed.length) {
            log(`kubernetes: the ${order.length} objects of the stack are applied and unchanged`);
            return;
        }
        // Waits only among what is applied now: what did not change is already there.
        const urns = new Set(changed.map((x) => x.urn));
        await applyObjects(this.client, changed.map((x) => ({ ...x, waitsFor: x.waitsFor.filter((u) => urns.has(u)) })), { await: true, signal, log: (l) => log(`kubernetes: ${l}`) });
        for (const x of changed) state[describeObject(x.object)] = hash(x);
        fs.writeFileSync(stateFile, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
    }

    /** A ServiceAccount token (TokenRequest, as the kubelet projects it). */
    serviceAccountToken(namespace: string, name: string, seconds = 3600): Promise<string> {
        return this.controlPlane.serviceAccountToken(namespace, name, seconds);
    }

    async inferenceServices(namespace: string): Promise<any[]> {
        const r = await this.client.call("GET", `/apis/${ISVC.group}/${ISVC.version}/namespaces/${namespace}/${ISVC.plural}`);
        return r.body.items as any[];
    }

    /** Writes an InferenceService's status subresource (what KServe's controller reports). */
    async writeInferenceServiceStatus(namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
        await this.client.call("PATCH", `/apis/${ISVC.group}/${ISVC.version}/namespaces/${namespace}/${ISVC.plural}/${name}/status`, { status }, "application/merge-patch+json");
    }

    /** Calls `f` whenever an InferenceService of `namespace` changes (polled each second). */
    watchInferenceServices(namespace: string, f: () => void): void {
        this.listeners.push(f);
        if (this.timer) return;
        const poll = async () => {
            try {
                const items = await this.inferenceServices(namespace);
                const seen = items.map((i) => `${i.metadata.name}@${i.metadata.resourceVersion}`).sort().join(",");
                if (seen !== this.lastSeen) {
                    this.lastSeen = seen;
                    for (const l of this.listeners) l();
                }
            } catch {
                /* the next poll retries; the watcher reports its own errors */
            }
            if (!this.stopped) this.timer = setTimeout(poll, POLL_MS);
        };
        this.timer = setTimeout(poll, 0);
    }

    /** Writes to InferenceServices, from the API server's audit log (`user`: only that identity's). */
    inferenceServiceWrites(o: { user?: string; onlySuccessful?: boolean; since?: number } = {}): AuditedWrite[] {
        return this.controlPlane
            .auditedWrites(o.onlySuccessful)
            .filter((w) => (!o.user || w.user === o.user) && (!o.since || w.at >= o.since));
    }

    async stop(): Promise<void> {
        this.stopped = true;
        clearTimeout(this.timer);
        this.timer = undefined;
        await this.node?.stop();
        await this.proxy?.stop();
        this.client.close();
        await this.controlPlane.stop();
    }
}
