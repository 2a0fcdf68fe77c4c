// Shared body of the per-stack specs: runs index.ts for one stack file under the mock runtime (once per
// mocha process, since the program registers its resources on import) and checks the whole render.
import assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { KubeObject, toKubeObjects } from "../../scripts/lib/manifests";
import { ProgramRun, ROOT as PROJECT_ROOT, runProgram } from "../../scripts/lib/program";
import { readStackFile } from "../../scripts/lib/stackFile";
import { platformSchema } from "../../stacks/schema";
import { schemaErrors } from "../../scripts/lib/schemaValidation";
import { ephemeralStorageFit } from "../../policy/lib/ephemeralStorage";
import { labelSelectorMatches } from "../../policy/lib/selectors";
import { assertRestricted, ROOT } from "../harness";
import { applyOrder } from "../../scripts/cluster/applyOrder";
import { readinessCycles } from "../../scripts/cluster/readiness";

export interface StackContext {
    run: ProgramRun;
    objects: KubeObject[];
    get(kind: string, namePrefix: string): any;
}

const podSpecOf = (o: any) => (o.kind === "CronJob" ? o.spec.jobTemplate.spec.template.spec : o.spec?.template?.spec);

export function describeStack(stack: string, expectations: (ctx: () => StackContext) => void, options: { stackDir?: string } = {}): void {
    describe(`stack ${stack}: the whole program`, () => {
        let ctx: StackContext;
        before(async () => {
            const run = await runProgram(stack, { stackDir: options.stackDir });
            const objects = toKubeObjects(run.resources, true);
            ctx = {
                run,
                objects,
                get(kind, namePrefix) {
                    const found = objects.filter((o) => o.kind === kind && o.metadata.name.startsWith(namePrefix));
                    assert.equal(found.length, 1, `expected one ${kind} ${namePrefix}*, found ${found.map((o) => o.metadata.name)}`);
                    return found[0];
                },
            };
        });

        it("validates every rendered object against the Kubernetes OpenAPI schema", () => {
            assert.ok(ctx.objects.length >= 15, `only ${ctx.objects.length} objects rendered`);
            assert.deepEqual(schemaErrors(ctx.objects), []);
        });

        it("can finish a `pulumi up`: no Service waits for endpoints from a workload that waits for the Service", () => {
            assert.deepEqual(readinessCycles(applyOrder(ctx.run.resources)), []);
        });

        it("puts every namespaced object into the platform namespace, labelled restricted", () => {
            const ns = ctx.objects.find((o) => o.kind === "Namespace")!;
            assert.equal((ns.metadata.labels as any)["pod-security.kubernetes.io/enforce"], "restricted");
            for (const o of ctx.objects) {
                if (o.kind !== "Namespace") assert.equal(o.metadata.namespace, ns.metadata.name, `${o.kind}/${o.metadata.name}`);
            }
        });

        it("runs every pod non-root, without privileges, with limits and pinned images", () => {
            const workloads = ctx.objects.filter((o) => podSpecOf(o));
            assert.ok(workloads.length >= 5);
            for (const w of workloads) assertRestricted(podSpecOf(w), assert);
        });

        it("sizes every pod's emptyDirs within its ephemeral-storage limit (a spool past the limit is an eviction)", () => {
            const workloads = ctx.objects.filter((o) => podSpecOf(o));
            let volumes = 0;
            for (const w of workloads) {
                const fit = ephemeralStorageFit(podSpecOf(w));
                assert.deepEqual(fit.problems, [], `${w.kind}/${w.metadata.name}`);
                if (fit.emptyDirs.length) assert.ok(fit.podLimit! > 0, `${w.kind}/${w.metadata.name}: emptyDirs need a limit`);
                volumes += fit.emptyDirs.length;
            }
            assert.ok(volumes >= workloads.length, `every pod has a read-only root and so emptyDirs; found ${volumes} in ${workloads.length} pods`);
        });

        it("leaves the namespace, both StatefulSets and the data's credential Secrets on `pulumi destroy` as retainOnDestroy says", () => {
            const { values } = readStackFile(options.stackDir ?? PROJECT_ROOT, stack);
            const retain = platformSchema.shape.retainOnDestroy.parse(values["mlflow-platform:retainOnDestroy"]);
            const retained = (type: string) => ctx.run.resources.filter((r) => r.type === type).map((r) => [r.inputs.metadata?.name ?? r.name, r.options.retainOnDelete]);
            assert.deepEqual(retained("kubernetes:core/v1:Namespace"), [[ctx.objects.find((o) => o.kind === "Namespace")!.metadata.name, retain]]);
            assert.deepEqual(retained("kubernetes:apps/v1:StatefulSet").sort(), [["mlflow-minio", retain], ["mlflow-postgres", retain]]);
            // The Secrets whose values the data needs: PostgreSQL's password, MinIO's root and its users' keys.
            const dataSecrets = ["mlflow-database", "mlflow-artifacts-root", "mlflow-artifacts-readwrite", "mlflow-artifacts-readonly", "mlflow-artifacts-backup", "mlflow-artifacts-mirror"];
            const secrets = retained("kubernetes:core/v1:Secret");
            for (const name of dataSecrets) assert.deepEqual(secrets.filter(([n]) => n === name), [[name, retain]], name);
            const others = ctx.run.resources.filter((r) => r.options.retainOnDelete === true && !dataSecrets.includes(r.inputs.metadata?.name) && !["kubernetes:apps/v1:StatefulSet", "kubernetes:core/v1:Namespace"].includes(r.type));
            assert.deepEqual(others.map((r) => `${r.type} ${r.name}`), [], "only what holds or unlocks data is kept");
        });

        it("mirrors the artifact bucket into the backup bucket's artifacts/ as the artifact backup user, when artifactBackup.enabled", async () => {
            const { values } = readStackFile(options.stackDir ?? PROJECT_ROOT, stack);
            const slice = platformSchema.shape.artifactBackup.parse(values["mlflow-platform:artifactBackup"] ?? {});
            const crons = ctx.objects.filter((o) => o.kind === "CronJob" && o.metadata.name === "mlflow-artifact-backup") as any[];
            assert.equal(crons.length, slice.enabled ? 1 : 0);
            if (!slice.enabled) return;
            assert.equal(crons[0].spec.schedule, slice.schedule);
            const pod = podSpecOf(crons[0]);
            const env = Object.fromEntries(pod.containers[0].env.map((e: any) => [e.name, e.value]));
            const outputs = ctx.run.stackOutputs as Record<string, pulumi.Output<unknown>>;
            const value = (o: pulumi.Output<unknown>) => new Promise((r) => o.apply(r));
            assert.equal(env.ARTIFACT_BUCKET, await value(outputs.artifactBucket));
            assert.equal(env.BACKUP_BUCKET, await value(outputs.backupBucket));
            assert.equal(env.BACKUP_PREFIX, "artifacts");
            const secretNames = (await value(pulumi.output(outputs.secretNames))) as Record<string, string>;
            assert.deepEqual(pod.volumes.filter((v: any) => v.secret).map((v: any) => v.secret.secretName), [secretNames.artifactBackup]);
        });

        it("alerts on a failed or missing run of each backup CronJob it renders, by the CronJob's rendered name", () => {
            const backups = ctx.objects
                .filter((o) => o.kind === "CronJob" && ["databaseBackup", "artifactBackup"].includes((o.metadata.labels as Record<string, string>)["app.kubernetes.io/component"]))
                .map((o) => o.metadata.name)
                .sort();
            const prometheusRules = ctx.objects.filter((o) => o.kind === "PrometheusRule") as any[];
            const rules = prometheusRules.flatMap((r) => r.spec.groups).filter((g: any) => g.name === "mlflow-platform.backups").flatMap((g: any) => g.rules);
            const watched = (alert: string) => rules.filter((r: any) => r.alert === alert).map((r: any) => /cronjob="([^"]+)"/.exec(r.expr)![1]).sort();
            const expected = prometheusRules.length ? backups : [];
            assert.deepEqual(watched("MlflowBackupFailed"), expected);
            assert.deepEqual(watched("MlflowBackupMissing"), expected);
            for (const r of rules.filter((x: any) => x.alert === "MlflowBackupFailed")) assert.match(r.expr, /owner_kind="CronJob",owner_name="mlflow-(database|artifact)-backup"/);
            // The names are plain: the alerts go in without waiting for the CronJobs, which wait for the buckets.
            const cronJobs = new Set(ctx.run.resources.filter((r) => r.type === "kubernetes:batch/v1:CronJob").map((r) => r.urn));
            for (const r of ctx.run.resources.filter((x) => x.type === "kubernetes:monitoring.coreos.com/v1:PrometheusRule")) {
                assert.deepEqual(r.dependencies.filter((d) => cronJobs.has(d)), [], r.name);
            }
        });

        it("denies all traffic by default and gives every pod a policy of its own", () => {
            const policies = ctx.objects.filter((o) => o.kind === "NetworkPolicy") as any[];
            const deny = policies.find((p) => Object.keys(p.spec.podSelector).length === 0);
            assert.ok(deny, "a default-deny policy");
            assert.deepEqual(deny.spec.policyTypes, ["Ingress", "Egress"]);
            assert.equal(deny.spec.ingress, undefined);
            assert.equal(deny.spec.egress, undefined);
            for (const w of ctx.objects.filter((o) => podSpecOf(o))) {
                const t = (w as any).kind === "CronJob" ? (w as any).spec.jobTemplate.spec.template : (w as any).spec.template;
                const podLabels = t.metadata.labels as Record<string, string>;
                const own = policies.filter((p) => p !== deny && labelSelectorMatches(p.spec.podSelector, podLabels));
                assert.equal(own.length, 1, `${w.kind}/${w.metadata.name} should be selected by exactly one allow policy`);
            }
        });

        it("labels every object with the app.kubernetes.io set", () => {
            for (const o of ctx.objects) {
                const labels = (o.metadata.labels ?? {}) as Record<string, string>;
                for (const k of ["name", "instance", "component", "part-of", "managed-by"]) {
                    assert.ok(labels[`app.kubernetes.io/${k}`], `${o.kind}/${o.metadata.name} lacks app.kubernetes.io/${k}`);
                }
            }
        });

        it("names every component once: its folder, its type token and its objects' component label agree", () => {
            const components = ctx.run.resources.filter((r) => !r.custom && r.type.startsWith("mlflow-platform:"));
            assert.ok(components.length >= 6);
            for (const c of components) {
                const [, module, cls] = c.type.split(":");
                const file = path.join(ROOT, "components", module, "index.ts");
                assert.ok(fs.existsSync(file), `${c.type}: no components/${module}/index.ts`);
                assert.match(fs.readFileSync(file, "utf8"), new RegExp(`export class ${cls} extends pulumi\\.ComponentResource`), `${c.type}: components/${module}/index.ts does not declare ${cls}`);
            }
            const modules = new Set(components.map((c) => c.type.split(":")[1]));
            for (const o of ctx.objects) {
                const label = (o.metadata.labels as Record<string, string>)["app.kubernetes.io/component"];
                assert.ok(label === "platform" || modules.has(label), `${o.kind}/${o.metadata.name}: component label ${label} names no component of this stack`);
            }
        });

        it("keeps secret values inside Secrets: no other object carries one", () => {
            const secretValues = ctx.objects
                .filter((o) => o.kind === "Secret")
                .flatMap((s) => Object.values((s.stringData ?? {}) as Record<string, string>))
                .flatMap((v) => v.split("\n").map((line) => line.replace(/^[A-Z_]+=/, "")))
                .filter((v) => v.length >= 16);
            assert.ok(secretValues.length >= 5, "expected generated credentials");
            for (const o of ctx.objects.filter((x) => x.kind !== "Secret")) {
                const text = JSON.stringify(o);
                for (const v of secretValues) assert.ok(!text.includes(v), `${o.kind}/${o.metadata.name} contains a secret value`);
            }
        });

        it("exports the tracking URI, namespace, bucket and secret names, and passwords only as secrets", async () => {
            const outputs = ctx.run.stackOutputs as Record<string, pulumi.Output<unknown>>;
            const value = (o: pulumi.Output<unknown>) => new Promise((r) => o.apply(r));
            assert.match(String(await value(outputs.trackingUri)), /^http:\/\/mlflow-tracking\.[a-z0-9-]+\.svc:5000$/);
            assert.ok(await value(outputs.namespaceName));
            assert.ok(await value(outputs.artifactBucket));
            const names = (await value(pulumi.output(outputs.secretNames))) as Record<string, string>;
            assert.deepEqual(Object.keys(names).sort(), ["artifactBackup", "artifactsReadOnly", "artifactsReadWrite", "backups", "database", "ingressCredentials", "ingressHtpasswd"]);
            const secretOutputs = ["databasePassword", "ingressPasswords"];
            for (const name of secretOutputs) assert.equal(await pulumi.isSecret(outputs[name]), true, `${name} must be secret`);
            for (const [name, o] of Object.entries(outputs)) {
                if (!secretOutputs.includes(name) && pulumi.Output.isInstance(o)) assert.equal(await pulumi.isSecret(o), false, `${name} should be plain`);
            }
        });

        expectations(() => ctx);
    });
}
