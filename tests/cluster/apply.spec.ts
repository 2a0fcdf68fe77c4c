// Cluster tier: every stack applied to a real kube-apiserver (the pinned control plane, built from its Go
// modules and started on 127.0.0.1 for this file) the way `pulumi up` would apply it, through the CLI a
// user runs (`npm run apply`): dry-run with strict field validation first, then for real, after which the
// real Deployment, StatefulSet and Job controllers make the stacks' Pods and admission (PodSecurity
// `restricted` on the namespace) decides on each. And specs that show the checks are live: objects a
// cluster refuses are refused here.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ControlPlane } from "../../scripts/cluster/controlPlane";
import { ApplyError, applyObjects, crdFiles, installCrds } from "../../scripts/cluster/apply";
import { KubeClient, KubeError } from "../../scripts/cluster/kubeClient";
import { sleep } from "../../scripts/local/supervisor";
import { ROOT } from "../harness";

interface Report {
    stack: string;
    dryRun: boolean;
    applied: { object: string; fieldManager: string }[];
    warnings: { object: string; warning: string }[];
    order: { urn: string; waitsFor: string[] }[];
}

const STACKS: { stack: string; stackDir?: string; namespace: string }[] = [
    { stack: "dev", namespace: "mlflow-dev" },
    { stack: "staging", namespace: "mlflow-staging" },
    { stack: "prod", namespace: "mlflow" },
    { stack: "serving", stackDir: path.join(ROOT, "tests", "fixtures", "stacks"), namespace: "mlflow-serving" },
];

/** `npm run apply` for one stack, as a user runs it (its own process: the program runs once per process). */
function apply(kubeconfig: string, s: (typeof STACKS)[number], dryRun: boolean): { status: number | null; stderr: string; report?: Report } {
    const args = ["-r", "ts-node/register/transpile-only", "scripts/apply.ts", "--stack", s.stack, "--kubeconfig", kubeconfig, "--json", "--seed", "cluster-tier"];
    if (s.stackDir) args.push("--stack-dir", s.stackDir);
    if (dryRun) args.push("--dry-run");
    const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20 });
    return { status: r.status, stderr: r.stderr, report: r.status === 0 ? (JSON.parse(r.stdout) as Report) : undefined };
}

describe("cluster tier: the stacks on a real Kubernetes API server", function () {
    this.timeout(1_800_000); // a cold machine builds the control plane first (about 18 minutes)
    let cp: ControlPlane;
    let client: KubeClient;
    let dir: string;

    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlflow-platform-cluster-"));
        cp = await ControlPlane.start({ dir, ephemeral: true, log: (l) => console.log(`      [cluster] ${l}`) });
        client = cp.client();
        await installCrds(client, crdFiles());
        await cp.waitForServiceAccount("default");
    });

    after(async function () {
        this.timeout(120_000);
        client?.close();
        await cp?.stop();
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    for (const s of STACKS) {
        it(`${s.stack}: every object passes server-side dry-run apply with strict validation, no warnings`, () => {
            const r = apply(cp.kubeconfig, s, true);
            assert.equal(r.status, 0, `npm run apply --dry-run of ${s.stack} failed:\n${r.stderr}`);
            const { report } = r;
            assert.ok(report && report.applied.length >= 20, `only ${report?.applied.length} objects applied`);
            assert.deepEqual(report.warnings, [], "the API server warned (PodSecurity, deprecations, unknown fields)");
            assert.match(report.applied[0].object, new RegExp(`^Namespace ${s.namespace}$`), "the namespace goes first");
            for (const a of report.applied) assert.match(a.fieldManager, /^pulumi-kubernetes-[0-9a-f]{8}$/, `${a.object}: not the Pulumi provider's field manager`);
        });
    }

    it("dev: the tracking Deployment is applied after the migration Job, as its dependsOn makes `pulumi up` wait", () => {
        const r = apply(cp.kubeconfig, STACKS[0], true);
        assert.equal(r.status, 0, r.stderr);
        const names = r.report!.applied.map((a) => a.object);
        const job = names.findIndex((n) => /^Job mlflow-dev\/mlflow-migrate$/.test(n));
        const deployment = names.findIndex((n) => /^Deployment mlflow-dev\/mlflow-server$/.test(n));
        assert.ok(job >= 0 && deployment >= 0, `no migration Job or tracking Deployment in ${names.join(", ")}`);
        assert.ok(job < deployment, `the Deployment (#${deployment}) is applied before the migration Job (#${job})`);
        const deploymentUrn = r.report!.order[deployment];
        assert.ok(deploymentUrn.waitsFor.includes(r.report!.order[job].urn), "the Deployment is not recorded as waiting for the Job");
    });

    for (const s of STACKS) {
        it(`${s.stack}: applied for real, every Pod the controllers make is admitted (no FailedCreate), owned by the Pulumi field manager`, async () => {
            const r = apply(cp.kubeconfig, s, false);
            assert.equal(r.status, 0, `npm run apply of ${s.stack} failed:\n${r.stderr}`);
            const workloads = r.report!.applied.filter((a) => /^(Deployment|StatefulSet|Job) /.test(a.object));
            assert.ok(workloads.length >= 3, `only ${workloads.length} workloads`);
            // The controllers make ReplicaSets and Pods within seconds; a Pod that admission refuses leaves a
            // FailedCreate event on its owner instead.
            let pods: any[] = [];
            for (let i = 0; i < 60; i++) {
                pods = (await client.call("GET", `/api/v1/namespaces/${s.namespace}/pods`)).body.items;
                if (pods.length >= workloads.length) break;
                await sleep(500);
            }
            const events = (await client.call("GET", `/api/v1/namespaces/${s.namespace}/events`)).body.items as any[];
            const failed = events.filter((e) => e.reason === "FailedCreate").map((e) => `${e.involvedObject.kind} ${e.involvedObject.name}: ${e.message}`);
            assert.deepEqual(failed, [], "the controllers could not create some Pods");
            assert.ok(pods.length >= workloads.length, `${pods.length} Pods for ${workloads.length} workloads: ${workloads.map((w) => w.object).join(", ")}`);
            const ns = (await client.call("GET", `/api/v1/namespaces/${s.namespace}`)).body;
            assert.equal(ns.metadata.labels["pod-security.kubernetes.io/enforce"], "restricted");
            const managers = (ns.metadata.managedFields as any[]).filter((m) => m.operation === "Apply").map((m) => m.manager);
            assert.ok(managers.some((m) => /^pulumi-kubernetes-[0-9a-f]{8}$/.test(m)), `namespace applied by ${managers.join(", ")}`);
        });
    }

    describe("the checks are live", () => {
        const ns = "mlflow-dev";
        const expectRefused = async (f: () => Promise<unknown>, status: number, message: RegExp) => {
            try {
                await f();
            } catch (e) {
                assert.ok(e instanceof KubeError, String(e));
                assert.equal(e.status, status, e.message);
                assert.match(e.serverMessage, message);
                return;
            }
            assert.fail("the API server accepted it");
        };
        const apply = (o: any) => client.apply(o, { fieldManager: "cluster-tier-spec", dryRun: true });

        it("an object the server refuses stops the apply, named, with the server's message; nothing after it is applied", async () => {
            const object = (name: string, extra: object = {}) => ({
                apiVersion: "v1",
                kind: "ConfigMap",
                metadata: { name, namespace: ns },
                data: { a: "b" },
                ...extra,
            });
            const ordered = [object("cluster-tier-first"), object("cluster-tier-bad", { dataa: {} }), object("cluster-tier-after")].map((o, i) => ({ object: o as any, urn: `urn:${i}`, waitsFor: [] }));
            await assert.rejects(applyObjects(client, ordered), (e: unknown) => {
                assert.ok(e instanceof ApplyError, String(e));
                assert.equal(e.object, `ConfigMap ${ns}/cluster-tier-bad`);
                assert.match(e.message, /^ConfigMap mlflow-dev\/cluster-tier-bad was refused by the API server \(HTTP 500\): .*\.dataa: field not declared in schema/);
                return true;
            });
            assert.equal((await client.request("GET", `/api/v1/namespaces/${ns}/configmaps/cluster-tier-first`)).status, 200);
            assert.equal((await client.request("GET", `/api/v1/namespaces/${ns}/configmaps/cluster-tier-after`)).status, 404);
        });

        it("a Job whose template changed is replaced, as `pulumi up` replaces it (the server refuses the update: the template is immutable)", async () => {
            // Suspended: no pod, only the object's fate matters here.
            const job = (args: string[]) => ({
                apiVersion: "batch/v1",
                kind: "Job",
                metadata: { name: "cluster-tier-replaced", namespace: ns },
                spec: { suspend: true, template: { spec: { restartPolicy: "Never", containers: [{ name: "c", image: "registry.invalid/c:1", args }] } } },
            });
            const logs: string[] = [];
            const once = (args: string[]) => applyObjects(client, [{ object: job(args) as any, urn: "urn:job", waitsFor: [] }], { log: (l) => logs.push(l) });
            const live = async () => (await client.call("GET", `/apis/batch/v1/namespaces/${ns}/jobs/cluster-tier-replaced`)).body;
            await once(["v1"]);
            const before = await live();
            await once(["v2"]);
            const after = await live();
            assert.notEqual(after.metadata.uid, before.metadata.uid, "a new Job, not an update");
            assert.deepEqual(after.spec.template.spec.containers[0].args, ["v2"]);
            assert.ok(logs.some((l) => /Job mlflow-dev\/cluster-tier-replaced: its template changed and cannot be updated; replacing it/.test(l)), logs.join("\n"));
            // An unchanged Job is left as it is.
            await once(["v2"]);
            assert.equal((await live()).metadata.uid, after.metadata.uid);
        });

        it("PodSecurity `restricted` refuses a Pod that runs as root with privilege escalation", async () => {
            await expectRefused(
                () => apply({ apiVersion: "v1", kind: "Pod", metadata: { name: "bad", namespace: ns }, spec: { containers: [{ name: "c", image: "busybox:1.37", securityContext: { runAsUser: 0, allowPrivilegeEscalation: true } }] } }),
                403,
                /violates PodSecurity "restricted:latest".*allowPrivilegeEscalation/,
            );
        });

        it("strict validation refuses an unknown field in a Deployment", async () => {
            const deployment = {
                apiVersion: "apps/v1",
                kind: "Deployment",
                metadata: { name: "bad", namespace: ns },
                spec: { selector: { matchLabels: { a: "b" } }, replica: 2, template: { metadata: { labels: { a: "b" } }, spec: { containers: [{ name: "c", image: "busybox:1.37" }] } } },
            };
            // Server-side apply reports a field outside the schema as a typed-patch failure (HTTP 500).
            await expectRefused(() => apply(deployment), 500, /\.spec\.replica: field not declared in schema/);
        });

        it("a CRD schema refuses an unknown field in an InferenceService and a bad ServiceMonitor interval", async () => {
            await expectRefused(
                () => apply({ apiVersion: "serving.kserve.io/v1beta1", kind: "InferenceService", metadata: { name: "bad", namespace: ns }, spec: { predictor: { model: { modelFormat: { name: "mlflow" }, storageUrl: "s3://x" } } } }),
                500,
                /\.spec\.predictor\.model\.storageUrl: field not declared in schema/,
            );
            await expectRefused(
                () => apply({ apiVersion: "monitoring.coreos.com/v1", kind: "ServiceMonitor", metadata: { name: "bad", namespace: ns }, spec: { selector: {}, endpoints: [{ port: "http", interval: "every minute" }] } }),
                422,
                /interval/,
            );
        });
    });
});
