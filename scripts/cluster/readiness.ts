// When `pulumi up` counts a Kubernetes object as created: the Pulumi Kubernetes provider's await logic
// (pulumi-kubernetes provider/pkg/await: a Deployment once its new ReplicaSet's pods are available, a
// StatefulSet once every replica is ready on the current revision, a Job once Complete, a Pod once
// Ready, a claim once Bound, a Service with a selector once its endpoints exist and none is not ready;
// headless Services, ExternalNames and `pulumi.com/skipAwait: "true"` are not waited for). Dependents
// are created only after that, so a Service whose endpoints come from a workload that waits for the
// Service never finishes: readinessCycles finds those before anything is applied.
import { describeObject, OrderedObject } from "./applyOrder";
import { KubeObject } from "../lib/manifests";
import { mapSelectorMatches } from "../../policy/lib/selectors";
import { KubeClient } from "./kubeClient";
import { sleep } from "../local/supervisor";

export const SKIP_AWAIT = "pulumi.com/skipAwait";
/** The provider's default create timeout. */
export const AWAIT_TIMEOUT_MS = 10 * 60_000;

const skipped = (o: KubeObject) => (o.metadata.annotations as Record<string, string> | undefined)?.[SKIP_AWAIT] === "true";

/** A Service that `pulumi up` waits on for ready endpoints. */
function awaitedService(o: KubeObject): boolean {
    const spec = (o as any).spec ?? {};
    return o.kind === "Service" && !skipped(o) && spec.type !== "ExternalName" && spec.clusterIP !== "None" && Object.keys(spec.selector ?? {}).length > 0;
}

const POD_TEMPLATE_KINDS = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"]);

/**
 * Each awaited Service whose endpoints come from a workload that waits (through any chain of
 * dependencies) for that Service: `pulumi up` would time out on it.
 */
export function readinessCycles(order: OrderedObject[]): string[] {
    const byUrn = new Map(order.map((x) => [x.urn, x]));
    const closure = (x: OrderedObject, seen = new Set<string>()): Set<string> => {
        for (const u of x.waitsFor) {
            if (seen.has(u)) continue;
            seen.add(u);
            const d = byUrn.get(u);
            if (d) closure(d, seen);
        }
        return seen;
    };
    const out: string[] = [];
    for (const svc of order.filter((x) => awaitedService(x.object))) {
        const selector = (svc.object as any).spec.selector;
        for (const w of order.filter((x) => POD_TEMPLATE_KINDS.has(x.object.kind) && x.object.metadata.namespace === svc.object.metadata.namespace)) {
            const labels = (w.object as any).spec?.template?.metadata?.labels;
            if (!mapSelectorMatches(selector, labels) || !closure(w).has(svc.urn)) continue;
            out.push(`${describeObject(svc.object)} waits for ready endpoints from ${describeObject(w.object)}, which waits for the Service`);
        }
    }
    return out;
}

const conditionTrue = (status: any, type: string) => (status?.conditions ?? []).some((c: any) => c.type === type && c.status === "True");

/** Whether the object counts as created: `ready`, or what it waits for now, or a failure. */
export async function readiness(client: KubeClient, o: KubeObject): Promise<{ ready: boolean; waiting?: string; failed?: string }> {
    if (skipped(o)) return { ready: true };
    const get = async () => (await client.call("GET", await client.pathOf(o))).body;
    switch (o.kind) {
        case "Deployment": {
            const d = await get();
            const want = d.spec.replicas ?? 1;
            const s = d.status ?? {};
            const progressing = (s.conditions ?? []).find((c: any) => c.type === "Progressing");
            if (progressing?.reason === "ProgressDeadlineExceeded") return { ready: false, failed: progressing.message };
            const ready = (s.observedGeneration ?? 0) >= d.metadata.generation && (s.updatedReplicas ?? 0) >= want && (s.availableReplicas ?? 0) >= want && (s.replicas ?? 0) === (s.updatedReplicas ?? 0);
            return { ready, waiting: `${s.availableReplicas ?? 0}/${want} available, ${s.updatedReplicas ?? 0} updated` };
        }
        case "StatefulSet": {
            const d = await get();
            const want = d.spec.replicas ?? 1;
            const s = d.status ?? {};
            const onRevision = d.spec.updateStrategy?.type === "OnDelete" || s.currentRevision === s.updateRevision;
            const ready = (s.observedGeneration ?? 0) >= d.metadata.generation && (s.readyReplicas ?? 0) >= want && onRevision;
            return { ready, waiting: `${s.readyReplicas ?? 0}/${want} ready${onRevision ? "" : ", rolling to the new revision"}` };
        }
        case "Job": {
            const j = await get();
            const failed = (j.status?.conditions ?? []).find((c: any) => c.type === "Failed" && c.status === "True");
            if (failed) return { ready: false, failed: `${failed.reason}: ${failed.message}` };
            return { ready: conditionTrue(j.status, "Complete"), waiting: `${j.status?.succeeded ?? 0} succeeded, ${j.status?.failed ?? 0} failed` };
        }
        case "Pod":
            return { ready: conditionTrue((await get()).status, "Ready"), waiting: "not Ready" };
        case "PersistentVolumeClaim":
            return { ready: (await get()).status?.phase === "Bound", waiting: "not Bound" };
        case "Service": {
            if (!awaitedService(o)) return { ready: true };
            const slices = (await client.call("GET", `/apis/discovery.k8s.io/v1/namespaces/${o.metadata.namespace}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D${o.metadata.name}`)).body.items as any[];
            const endpoints = slices.flatMap((s) => s.endpoints ?? []);
            const notReady = endpoints.filter((e) => e.conditions?.ready === false).length;
            return { ready: endpoints.length > 0 && notReady === 0, waiting: `${endpoints.length} endpoints, ${notReady} not ready` };
        }
        default:
            return { ready: true };
    }
}

/** Waits until the object counts as created; fails on its failure or after the timeout, saying what it waited for. */
export async function waitUntilReady(client: KubeClient, o: KubeObject, opts: { timeoutMs?: number; signal?: AbortSignal; log?: (l: string) => void } = {}): Promise<void> {
    const timeout = opts.timeoutMs ?? AWAIT_TIMEOUT_MS;
    const deadline = Date.now() + timeout;
    let last = "";
    let logged = Date.now();
    for (;;) {
        if (opts.signal?.aborted) throw new Error(`${describeObject(o)}: not waited for any longer (the apply failed elsewhere)`);
        const r = await readiness(client, o);
        if (r.ready) return;
        if (r.failed) throw new Error(`${describeObject(o)} failed: ${r.failed}`);
        last = r.waiting ?? "";
        if (Date.now() > deadline) throw new Error(`${describeObject(o)} not ready after ${Math.round(timeout / 1000)} s (${last})`);
        if (Date.now() - logged > 30_000) {
            opts.log?.(`waiting for ${describeObject(o)}: ${last}`);
            logged = Date.now();
        }
        await sleep(500);
    }
}
