// Cluster tier: prod scheduled by the real kube-scheduler. The nodes are Node objects this spec registers
// and keeps Ready (a heartbeat on their status, as a kubelet posts it); nothing runs on them, so this
// shows what the scheduler and the HPA, Deployment and Job controllers decide, not what a kubelet does.
// The prod tracking server asks for three replicas (HPA minReplicas) that must not share a node
// (required anti-affinity): on one node two stay Pending, on three nodes each lands on its own.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { crdFiles, installCrds } from "../../scripts/cluster/apply";
import { ControlPlane } from "../../scripts/cluster/controlPlane";
import { KubeClient } from "../../scripts/cluster/kubeClient";
import { sleep } from "../../scripts/local/supervisor";
import { ROOT } from "../harness";

const NAMESPACE = "mlflow";
/** A small cluster's worker node. */
const CAPACITY = { cpu: "4", memory: "16Gi", pods: "110", "ephemeral-storage": "100Gi" };

describe("cluster tier: prod on the real scheduler", function () {
    this.timeout(1_800_000);
    let cp: ControlPlane;
    let client: KubeClient;
    let dir: string;
    const nodes: string[] = [];
    let heartbeat: NodeJS.Timeout | undefined;

    /** Registers a Ready node and keeps its heartbeat fresh (the node lifecycle controller would mark it Unknown). */
    async function addNode(name: string): Promise<void> {
        await client.call("POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" } } });
        nodes.push(name);
        await beat(name);
    }
    async function beat(name: string): Promise<void> {
        const now = new Date().toISOString();
        const condition = { type: "Ready", status: "True", reason: "KubeletReady", message: "registered by the cluster tier", lastHeartbeatTime: now, lastTransitionTime: now };
        await client.call("PATCH", `/api/v1/nodes/${name}/status`, { status: { capacity: CAPACITY, allocatable: CAPACITY, conditions: [condition] } }, "application/strategic-merge-patch+json");
    }

    /** The tracking server's Pods: name → node (empty while Pending). */
    async function trackingPods(): Promise<Map<string, string>> {
        const pods = (await client.call("GET", `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=app.kubernetes.io/name%3Dtracking`)).body.items as any[];
        return new Map(pods.filter((p) => !p.metadata.deletionTimestamp).map((p) => [p.metadata.name, p.spec.nodeName ?? ""]));
    }
    async function waitFor(what: string, f: () => Promise<boolean>, ms = 120_000): Promise<void> {
        for (const end = Date.now() + ms; Date.now() < end; await sleep(500)) if (await f()) return;
        assert.fail(`${what}: not within ${ms / 1000} s (tracking pods: ${JSON.stringify([...(await trackingPods())])})`);
    }

    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlflow-platform-scheduling-"));
        cp = await ControlPlane.start({ dir, ephemeral: true, log: (l) => console.log(`      [cluster] ${l}`) });
        client = cp.client();
        await installCrds(client, crdFiles());
        await addNode("node-a");
        heartbeat = setInterval(() => nodes.forEach((n) => beat(n).catch(() => undefined)), 5000);
        const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/apply.ts", "--stack", "prod", "--kubeconfig", cp.kubeconfig, "--seed", "cluster-tier"], { cwd: ROOT, encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
    });

    after(async function () {
        this.timeout(120_000);
        clearInterval(heartbeat);
        client?.close();
        await cp?.stop();
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("on one node: the HPA asks for three tracking replicas, one is bound and two wait on the anti-affinity", async () => {
        await waitFor("three tracking pods (HPA minReplicas)", async () => (await trackingPods()).size === 3);
        await waitFor("one tracking pod bound", async () => [...(await trackingPods()).values()].filter(Boolean).length === 1);
        await sleep(3000); // give the scheduler the chance to (wrongly) place another one
        const pods = await trackingPods();
        assert.deepEqual([...pods.values()].sort(), ["", "", "node-a"]);
        const events = (await client.call("GET", `/api/v1/namespaces/${NAMESPACE}/events?fieldSelector=reason%3DFailedScheduling`)).body.items as any[];
        const pending = [...pods].filter(([, n]) => !n).map(([p]) => p);
        for (const p of pending) {
            const e = events.find((x) => x.involvedObject.name === p);
            assert.ok(e, `no FailedScheduling event for ${p}`);
            assert.match(e.message, /didn't match pod anti-affinity rules/);
        }
    });

    it("on three nodes: each tracking replica on its own node, and the Jobs' pods fit beside them", async () => {
        await addNode("node-b");
        await addNode("node-c");
        await waitFor("three tracking pods on three nodes", async () => new Set([...(await trackingPods()).values()].filter(Boolean)).size === 3);
        const jobs = (await client.call("GET", `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=batch.kubernetes.io/job-name`)).body.items as any[];
        assert.ok(jobs.length >= 2, `${jobs.length} Job pods`);
        await waitFor("the Job pods bound", async () => {
            const now = (await client.call("GET", `/api/v1/namespaces/${NAMESPACE}/pods?labelSelector=batch.kubernetes.io/job-name`)).body.items as any[];
            return now.every((p) => p.spec.nodeName);
        });
    });
});
