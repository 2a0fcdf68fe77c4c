// The local platform's Kubernetes: the real control plane (scripts/cluster/controlPlane.ts: etcd and
// kube-apiserver at the pinned version, data under the platform's directory, kept across restarts) with
// the rendered stack applied to it as `pulumi up` would (CRDs, dependency order, the provider's field
// manager, strict validation), and only what changed since the last start re-applied, as Pulumi diffs
// against its state. The deploy controller talks to it with a real ServiceAccount token under the
// stack's RBAC; the serving watcher reads the InferenceServices from it. No controller-manager,
// scheduler or node yet: workload objects are stored, not run by Kubernetes (the launcher runs them).
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { describeObject, fieldManagerFor, OrderedObject } from "../cluster/applyOrder";
import { applyObjects, crdFiles, installCrds } from "../cluster/apply";
import { AuditedWrite, ControlPlane } from "../cluster/controlPlane";
import { KubeClient } from "../cluster/kubeClient";

const ISVC = { group: "serving.kserve.io", version: "v1beta1", plural: "inferenceservices" };
const POLL_MS = 1000;

export interface LocalClusterOptions {
    dir: string;
    /** The stack's objects in apply order (RenderedStack.order). */
    order: OrderedObject[];
    log: (line: string) => void;
    signal?: AbortSignal;
}

export class LocalCluster {
    private listeners: (() => void)[] = [];
    private timer?: NodeJS.Timeout;
    private lastSeen = "";
    private stopped = false;

    private constructor(
        readonly controlPlane: ControlPlane,
        readonly client: KubeClient,
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
        const cp = await ControlPlane.start({ dir: o.dir, controllers: false, auditWrites: [`${ISVC.group}/${ISVC.plural}`], log: o.log, signal: o.signal });
        const cluster = new LocalCluster(cp, cp.client());
        try {
            await installCrds(cluster.client, crdFiles());
            await cluster.applyChanged(o.order, path.join(o.dir, "applied.json"), o.log);
        } catch (e) {
            await cluster.stop();
            throw e;
        }
        return cluster;
    }

    /**
     * Applies the objects whose rendered form differs from the last apply recorded in `stateFile` (all of
     * them on a fresh directory), in order; unchanged objects are not sent, as `pulumi up` sends nothing
     * for a resource without a diff.
     */
    private async applyChanged(order: OrderedObject[], stateFile: string, log: (l: string) => void): Promise<void> {
        const state: Record<string, string> = fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, "utf8")) : {};
        const hash = (x: OrderedObject) => createHash("sha256").update(JSON.stringify(x.object)).update(fieldManagerFor(x)).digest("hex");
        const changed = order.filter((x) => state[describeObject(x.object)] !== hash(x));
        if (!changed.length) {
            log(`kubernetes: the ${order.length} objects of the stack are applied and unchanged`);
            return;
        }
        await applyObjects(this.client, changed, { log: (l) => log(`kubernetes: ${l}`) });
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
        this.client.close();
        await this.controlPlane.stop();
    }
}
