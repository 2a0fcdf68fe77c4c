// Cluster tier: the local tier's node agent (scripts/local/node.ts) under the real control plane. The
// Deployment, StatefulSet, Job and CronJob controllers make the Pods, the scheduler binds them to the
// agent's Node, and the agent runs them as processes and reports what a kubelet reports: readiness from
// the pod's own probe, a liveness failure as a restart, a Job pod's real exit code, a claim bound to a
// directory that outlives its pod, a deleted pod replaced through its controller, a CronJob that fires
// on its schedule and is triggered by `kubectl create job --from`.
import assert from "assert/strict";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { ControlPlane } from "../../scripts/cluster/controlPlane";
import { KubeClient } from "../../scripts/cluster/kubeClient";
import { NodeAgent } from "../../scripts/local/node";
import { sleep, Supervisor } from "../../scripts/local/supervisor";
import { commandRuntime } from "../fixtures/node/commandRuntime";

const NS = "node-agent";
const RESTRICTED = {
    pod: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: "RuntimeDefault" } },
    container: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
};

function freePort(): Promise<number> {
    return new Promise((resolve) => {
        const s = net.createServer().listen(0, "127.0.0.1", () => {
            const { port } = s.address() as net.AddressInfo;
            s.close(() => resolve(port));
        });
    });
}

const container = (name: string, command: string[], extra: Record<string, unknown> = {}) => ({ name, image: "busybox:1.37", command, securityContext: RESTRICTED.container, ...extra });
const podTemplate = (labels: Record<string, string>, spec: Record<string, unknown>) => ({ metadata: { labels }, spec: { securityContext: RESTRICTED.pod, terminationGracePeriodSeconds: 5, ...spec } });
const deployment = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: NS },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: podTemplate({ app: name }, spec) },
});

describe("cluster tier: the node agent runs what the controllers make", function () {
    this.timeout(1_800_000);
    let cp: ControlPlane;
    let client: KubeClient;
    let agent: NodeAgent;
    let supervisor: Supervisor;
    let dir: string;
    let webPort: number;

    const get = async (p: string) => (await client.call("GET", p)).body;
    const pods = async (selector: string) => ((await get(`/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(selector)}`)).items as any[]).filter((p) => !p.metadata.deletionTimestamp);
    async function waitFor<T>(what: string, f: () => Promise<T | undefined | false>, ms = 120_000): Promise<T> {
        let last: unknown;
        for (const end = Date.now() + ms; Date.now() < end; await sleep(500)) {
            try {
                const v = await f();
                if (v) return v;
            } catch (e) {
                last = e;
            }
        }
        assert.fail(`${what}: not within ${ms / 1000} s${last ? ` (${(last as Error).message})` : ""}; pods: ${JSON.stringify((await get(`/api/v1/namespaces/${NS}/pods`)).items.map((p: any) => [p.metadata.name, p.status]))}`);
    }
    const ready = (p: any) => p.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True");

    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlflow-platform-node-"));
        cp = await ControlPlane.start({ dir: path.join(dir, "kubernetes"), ephemeral: true, log: (l) => console.log(`      [cluster] ${l}`) });
        client = cp.client();
        supervisor = new Supervisor(path.join(dir, "logs"), path.join(dir, "pids"));
        agent = new NodeAgent({ client, supervisor, runtime: commandRuntime(dir), volumeDir: (ns, claim) => path.join(dir, "volumes", ns, claim), log: (l) => console.log(`      [node] ${l}`) });
        await agent.start();
        webPort = await freePort();
        const site = path.join(dir, "site");
        fs.mkdirSync(site);
        fs.writeFileSync(path.join(site, "index.html"), "hello from a pod\n");
        const objects = [
            { apiVersion: "v1", kind: "Namespace", metadata: { name: NS, labels: { "pod-security.kubernetes.io/enforce": "restricted" } } },
            deployment("web", {
                containers: [
                    container("web", ["python3", "-m", "http.server", String(webPort), "--bind", "127.0.0.1", "--directory", site], {
                        ports: [{ name: "http", containerPort: webPort }],
                        readinessProbe: { httpGet: { path: "/index.html", port: "http" }, periodSeconds: 1 },
                    }),
                ],
            }),
            deployment("flaky", {
                volumes: [{ name: "work", emptyDir: {} }],
                containers: [
                    container("flaky", ["sh", "-c", "touch /work/alive; exec sleep 3600"], {
                        volumeMounts: [{ name: "work", mountPath: "/work" }],
                        livenessProbe: { exec: { command: ["test", "-f", "/work/alive"] }, periodSeconds: 1, failureThreshold: 2 },
                    }),
                ],
            }),
            {
                apiVersion: "apps/v1",
                kind: "StatefulSet",
                metadata: { name: "store", namespace: NS },
                spec: {
                    replicas: 1,
                    serviceName: "store",
                    selector: { matchLabels: { app: "store" } },
                    volumeClaimTemplates: [{ metadata: { name: "data" }, spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } } }],
                    template: podTemplate({ app: "store" }, {
                        containers: [
                            container("store", ["sh", "-c", "echo boot >> /data/boots; exec sleep 3600"], {
                                volumeMounts: [{ name: "data", mountPath: "/data" }],
                                readinessProbe: { exec: { command: ["test", "-s", "/data/boots"] }, periodSeconds: 1 },
                            }),
                        ],
                    }),
                },
            },
            {
                apiVersion: "batch/v1",
                kind: "Job",
                metadata: { name: "fails", namespace: NS },
                spec: { backoffLimit: 1, template: podTemplate({ app: "fails" }, { restartPolicy: "Never", containers: [container("fails", ["sh", "-c", "echo failing; exit 3"])] }) },
            },
            {
                apiVersion: "batch/v1",
                kind: "CronJob",
                metadata: { name: "tick", namespace: NS },
                spec: {
                    schedule: "* * * * *",
                    jobTemplate: {
                        spec: {
                            backoffLimit: 0,
                            template: podTemplate({ app: "tick" }, {
                                restartPolicy: "Never",
                                volumes: [{ name: "shared", emptyDir: {} }],
                                initContainers: [container("write", ["sh", "-c", "echo hello > /shared/msg"], { volumeMounts: [{ name: "shared", mountPath: "/shared" }] })],
                                containers: [container("read", ["sh", "-c", 'test "$(cat /shared/msg)" = hello'], { volumeMounts: [{ name: "shared", mountPath: "/shared" }] })],
                            }),
                        },
                    },
                },
            },
        ];
        for (const o of objects) await client.apply(o as any, { fieldManager: "node-agent-spec" });
    });

    after(async function () {
        this.timeout(120_000);
        await agent?.stop();
        await supervisor?.stopAll();
        client?.close();
        await cp?.stop();
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("a Deployment's pod runs, is Ready by its own readiness probe, and the Deployment is available", async () => {
        const pod = await waitFor("a Ready web pod", async () => (await pods("app=web")).find(ready));
        assert.equal(pod.spec.nodeName, agent.name);
        assert.equal(pod.status.phase, "Running");
        assert.ok(pod.status.containerStatuses[0].state.running, JSON.stringify(pod.status.containerStatuses));
        assert.equal(await (await fetch(`http://127.0.0.1:${webPort}/index.html`)).text(), "hello from a pod\n");
        await waitFor("web available", async () => (await get(`/apis/apps/v1/namespaces/${NS}/deployments/web`)).status?.availableReplicas === 1);
    });

    it("a deleted pod is stopped, removed, and replaced through its ReplicaSet", async () => {
        const before = await waitFor("a Ready web pod", async () => (await pods("app=web")).find(ready));
        await client.call("DELETE", `/api/v1/namespaces/${NS}/pods/${before.metadata.name}`);
        await waitFor("the old pod gone", async () => (await client.request("GET", `/api/v1/namespaces/${NS}/pods/${before.metadata.name}`)).status === 404);
        const after = await waitFor("a new Ready web pod", async () => (await pods("app=web")).find((p) => ready(p) && p.metadata.uid !== before.metadata.uid));
        assert.notEqual(after.metadata.name, before.metadata.name);
        assert.equal((await fetch(`http://127.0.0.1:${webPort}/index.html`)).status, 200);
    });

    it("a failing liveness probe restarts the container: restartCount and lastState as the kubelet reports them", async () => {
        const pod = await waitFor("flaky running", async () => (await pods("app=flaky")).find((p) => p.status?.containerStatuses?.[0]?.state?.running));
        const marker = path.join(dir, "pods", pod.metadata.uid, "volumes", "work", "alive");
        await waitFor("the alive file", async () => fs.existsSync(marker));
        fs.rmSync(marker);
        const restarted = await waitFor("flaky restarted", async () => (await pods("app=flaky")).find((p) => p.status?.containerStatuses?.[0]?.restartCount >= 1 && p.status.containerStatuses[0].state.running));
        assert.equal(restarted.metadata.uid, pod.metadata.uid, "the same pod, its container restarted");
        assert.equal(restarted.status.containerStatuses[0].lastState.terminated.exitCode, 137);
    });

    it("a StatefulSet's claim is bound to a directory of the node that keeps its data when the pod is replaced", async () => {
        const pvc = await waitFor("data-store-0 Bound", async () => {
            const c = await get(`/api/v1/namespaces/${NS}/persistentvolumeclaims/data-store-0`);
            return c.status?.phase === "Bound" && c;
        });
        const pv = await get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
        const volume = path.join(dir, "volumes", NS, "data-store-0");
        assert.equal(pv.spec.hostPath.path, volume);
        const first = await waitFor("store-0 Ready", async () => (await pods("app=store")).find(ready));
        assert.equal(fs.readFileSync(path.join(volume, "boots"), "utf8"), "boot\n");
        await client.call("DELETE", `/api/v1/namespaces/${NS}/pods/store-0`);
        await waitFor("a new store-0 Ready", async () => (await pods("app=store")).find((p) => ready(p) && p.metadata.uid !== first.metadata.uid));
        assert.equal(fs.readFileSync(path.join(volume, "boots"), "utf8"), "boot\nboot\n");
    });

    it("a Job's pods report their real exit code, and the Job controller gives up after its backoffLimit", async () => {
        const job = await waitFor("Job fails Failed", async () => {
            const j = await get(`/apis/batch/v1/namespaces/${NS}/jobs/fails`);
            return j.status?.conditions?.some((c: any) => c.type === "Failed" && c.status === "True") && j;
        }, 180_000);
        assert.equal(job.status.conditions.find((c: any) => c.type === "Failed").reason, "BackoffLimitExceeded");
        const failed = (await get(`/api/v1/namespaces/${NS}/pods?labelSelector=app%3Dfails`)).items as any[];
        assert.equal(failed.length, 2, "the first pod and one retry (backoffLimit 1)");
        for (const p of failed) {
            assert.equal(p.status.phase, "Failed");
            assert.equal(p.status.containerStatuses[0].state.terminated.exitCode, 3);
        }
    });

    it("a CronJob's Job made with `kubectl create job --from` runs its init container, then its container, to Complete", async () => {
        const r = cp.kubectl(["-n", NS, "create", "job", "tick-now", "--from=cronjob/tick"]);
        assert.equal(r.status, 0, r.stderr);
        await waitFor("tick-now Complete", async () => (await get(`/apis/batch/v1/namespaces/${NS}/jobs/tick-now`)).status?.conditions?.some((c: any) => c.type === "Complete" && c.status === "True"));
        const [pod] = (await get(`/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent("batch.kubernetes.io/job-name=tick-now")}`)).items as any[];
        assert.equal(pod.status.phase, "Succeeded");
        assert.equal(pod.status.initContainerStatuses[0].state.terminated.exitCode, 0);
        assert.equal(pod.status.containerStatuses[0].state.terminated.exitCode, 0);
    });

    it("the CronJob fires on its schedule (every minute) and its Job completes", async () => {
        const job = await waitFor("a scheduled tick Job Complete", async () => {
            const jobs = (await get(`/apis/batch/v1/namespaces/${NS}/jobs`)).items as any[];
            // The CronJob controller marks the Jobs it schedules (kubectl create job --from makes an owned one too).
            const scheduled = (j: any) => j.metadata.annotations?.["batch.kubernetes.io/cronjob-scheduled-timestamp"] && j.metadata.ownerReferences?.some((o: any) => o.kind === "CronJob" && o.name === "tick");
            return jobs.find((j) => scheduled(j) && j.status?.conditions?.some((c: any) => c.type === "Complete" && c.status === "True"));
        }, 150_000);
        assert.match(job.metadata.name, /^tick-\d+$/);
        const cron = await get(`/apis/batch/v1/namespaces/${NS}/cronjobs/tick`);
        assert.ok(cron.status.lastSuccessfulTime, JSON.stringify(cron.status));
    });
});
