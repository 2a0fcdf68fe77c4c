import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { allowedHosts, BACKEND_STORE_URI, sourceValidationRegex, TrackingServer, TrackingServerArgs } from "../../components/trackingServer";
import { z } from "zod";
import { DEFAULT_IMAGES } from "../../components/images";
import { GUARD_APP_NAME, GUARD_DIR, guardFiles } from "../../components/trackingServer/guard";
import { NO_DUMP_NEEDED, PLAN_FILE, PRE_UPGRADE_PREFIX, UPGRADE_DIR, UPGRADE_PLANNED } from "../../components/trackingServer/upgrade";
import { dumpScript } from "../../components/databaseBackup";
import { ephemeralStorageFit } from "../../policy/lib/ephemeralStorage";
import * as fs from "fs";
import * as path from "path";
import { trackingSchema } from "../../components/trackingServer/schema";
import { assertRestricted, assertSelects, installMocks, isSecretValue, unsecret, only, out, resetRegistry, settle, smallResources, T, find, preUpgradeDump, ROOT } from "../harness";

const dbEgress = { to: [{ podSelector: { matchLabels: { app: "db" } } }], ports: [{ protocol: "TCP", port: 5432 }] };
const s3Egress = { to: [{ podSelector: { matchLabels: { app: "minio" } } }], ports: [{ protocol: "TCP", port: 9000 }] };

type Overrides = Partial<Omit<TrackingServerArgs, "config">> & { config?: z.input<typeof trackingSchema> };

const fixture = ({ config, ...overrides }: Overrides = {}): TrackingServerArgs => ({
    namespace: "ml",
    config: trackingSchema.parse({ workers: 3, resources: { ...smallResources, limits: { ...smallResources.limits, "ephemeral-storage": "3Gi" } }, tmpSizeLimit: "2Gi", ...config }),
    publicUrl: "http://mlflow.example.com",
    database: { host: "db.ml.svc", port: 5432, databaseName: "mlflow", user: "mlflow", sslMode: "prefer", passwordSecretName: "db-secret", clientEgress: dbEgress },
    artifacts: { endpoint: "http://minio.ml.svc:9000", bucket: "artifacts", region: "us-east-1", readWriteSecretName: "rw-secret", clientEgress: s3Egress },
    clientNamespaces: ["ingress-nginx", "monitoring"],
    preUpgradeDump,
    ...overrides,
});

async function build(name: string, overrides: Overrides = {}) {
    const ts = new TrackingServer(name, fixture(overrides), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(ts.deployment, ts.service, ts.migrationJob, ts.resumeJob);
    await out(ts.trackingUri);
    const deployment = only(T.Deployment, `${name}-server`).inputs;
    return { ts, deployment, pod: deployment.spec.template.spec, container: deployment.spec.template.spec.containers[0] };
}

const flag = (args: string[], name: string) => args[args.indexOf(name) + 1];

describe("TrackingServer", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("runs mlflow server on uvicorn with proxied S3 artifacts and Prometheus metrics", async () => {
        const { container } = await build("ts-args");
        const args: string[] = container.args;
        assert.deepEqual(args.slice(0, 2), ["mlflow", "server"]);
        assert.equal(flag(args, "--host"), "0.0.0.0");
        assert.equal(flag(args, "--workers"), "3");
        assert.equal(flag(args, "--artifacts-destination"), "s3://artifacts");
        assert.ok(args.includes("--serve-artifacts"));
        assert.equal(flag(args, "--expose-prometheus"), "/mlflow/metrics");
        assert.ok(!args.some((a) => /gunicorn|waitress|disable-security-middleware/.test(a)), "security middleware must stay on");
        const metricsMount = container.volumeMounts.find((m: any) => m.mountPath === "/mlflow/metrics");
        assert.ok(metricsMount, "the Prometheus multiprocess dir must be a writable volume");
    });

    it("never splices credentials into the backend URI: libpq reads PG* env and a mounted password", async () => {
        const { container, pod } = await build("ts-db");
        assert.equal(flag(container.args, "--backend-store-uri"), BACKEND_STORE_URI);
        assert.doesNotMatch(BACKEND_STORE_URI, /@|:\/\/[^/]+/);
        const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.PGHOST, "db.ml.svc");
        assert.equal(env.PGUSER, "mlflow");
        assert.equal(env.PGPASSWORD, undefined, "the password must not be in the pod spec");
        const projected = pod.volumes.find((v: any) => v.name === "secret-env").projected.sources;
        const paths = projected.flatMap((s: any) => s.secret.items.map((i: any) => `${s.secret.name}/${i.key}->${i.path}`));
        assert.deepEqual(paths.sort(), [
            "db-secret/password->PGPASSWORD",
            "mlflow-tracking-flask/MLFLOW_FLASK_SERVER_SECRET_KEY->MLFLOW_FLASK_SERVER_SECRET_KEY".replace("mlflow", "ts-db"),
            "rw-secret/AWS_ACCESS_KEY_ID->AWS_ACCESS_KEY_ID",
            "rw-secret/AWS_SECRET_ACCESS_KEY->AWS_SECRET_ACCESS_KEY",
        ].sort());
        // The entrypoint exports each mounted file as an env var, then execs the args.
        assert.equal(container.command[0], "/bin/sh");
        assert.match(container.command[2], /for f in \/run\/secrets\/mlflow-env\/\*; do export .*; done; exec "\$@"/);
    });

    it("allows the ingress host and the Service's in-cluster names, never *", async () => {
        const { container, ts } = await build("ts-hosts", { publicUrl: "https://mlflow.corp.example" });
        const hosts = flag(container.args, "--allowed-hosts").split(",");
        for (const h of ["mlflow.corp.example", "ts-hosts-tracking", "ts-hosts-tracking.ml", "ts-hosts-tracking.ml.svc", "ts-hosts-tracking.ml.svc.cluster.local", "ts-hosts-tracking.ml.svc:5000"]) {
            assert.ok(hosts.includes(h), `missing ${h}`);
        }
        assert.ok(!hosts.includes("*"));
        // MLflow fnmatches only entries with `*`: none may be a pattern, or `10.*` admits `10.evil.example`.
        assert.deepEqual(hosts.filter((h) => h.includes("*")), []);
        // Prometheus scrapes the pod by IP: the kubelet expands $(POD_IP) from the downward API.
        assert.ok(hosts.includes("$(POD_IP):5000"));
        assert.deepEqual(container.env.find((e: any) => e.name === "POD_IP"), { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } });
        assert.deepEqual(await out(ts.allowedHosts), hosts);
        assert.throws(() => allowedHosts("s", "ns", ["*"]), /never include `\*`/);
    });

    it("runs MLflow as the platform's guard app from an immutable ConfigMap on PYTHONPATH, admitting only the edge's and a port-forward's origins", async () => {
        const { container, pod, ts } = await build("ts-guard", { publicUrl: "https://mlflow.corp.example" });
        assert.equal(flag(container.args, "--app-name"), GUARD_APP_NAME);
        const origins = ["https://mlflow.corp.example", "http://localhost:5000", "http://127.0.0.1:5000"];
        assert.equal(flag(container.args, "--cors-allowed-origins"), origins.join(","));
        assert.deepEqual(await out(ts.allowedOrigins), origins);
        const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
        assert.equal(env.PYTHONPATH, GUARD_DIR);
        assert.equal(env.MLFLOW_ENABLE_AI_GATEWAY, "false", "the AI gateway forwards to any URL a user names");
        assert.equal(env.MLFLOW_SERVER_ENABLE_JOB_EXECUTION, "false", "the GenAI job runner's consumers held 1.3 GiB of dev's 1.5 GiB limit");
        const mount = container.volumeMounts.find((m: any) => m.mountPath === GUARD_DIR);
        assert.equal(mount.readOnly, true);
        const volume = pod.volumes.find((v: any) => v.name === mount.name);
        const cm = only(T.ConfigMap, "ts-guard-guard").inputs;
        assert.equal(volume.configMap.name, cm.metadata.name);
        assert.equal(cm.immutable, true);
        // The name carries the content hash: changed files make a new ConfigMap and roll the pods.
        assert.equal(cm.metadata.name, `ts-guard-tracking-guard-${guardFiles().sha256.slice(0, 10)}`);
        // importlib.metadata finds the app in a dist-info folder's entry_points.txt.
        const mounted = Object.fromEntries(volume.configMap.items.map((i: any) => [i.path, cm.data[i.key]]));
        assert.match(mounted["mlflow_platform_guard-1.0.dist-info/entry_points.txt"], new RegExp(`^\\[mlflow\\.app\\]\n${GUARD_APP_NAME} = mlflow_platform_guard:app\n$`));
        assert.match(mounted["mlflow_platform_guard.py"], /^class PlatformGuard:/m);
    });

    it("restricts model version sources to the platform's own artifact space", async () => {
        const { container } = await build("ts-regex", { artifacts: { ...fixture().artifacts, bucket: "my.bucket" } });
        const env = container.env.find((e: any) => e.name === "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX");
        assert.equal(env.value, sourceValidationRegex("my.bucket"));
        const re = new RegExp(env.value);
        for (const ok of ["mlflow-artifacts:/1/models/m-1/artifacts", "models:/m-abc", "runs:/r/model", "s3://my.bucket/1/x"]) assert.ok(re.test(ok), ok);
        for (const bad of ["file:///etc/passwd", "s3://myxbucket/x", "s3://other/x", "/etc/passwd", "http://evil/x"]) assert.ok(!re.test(bad), bad);
    });

    it("probes readiness on /health, liveness elsewhere, with a startup probe", async () => {
        const { container } = await build("ts-probes");
        assert.equal(container.readinessProbe.httpGet.path, "/health");
        assert.ok(container.startupProbe.httpGet, "startup probe");
        assert.notDeepEqual(container.livenessProbe, container.readinessProbe);
        assert.equal(container.livenessProbe.httpGet.path, "/version");
    });

    it("meets the restricted profile with a read-only root and a size-limited /tmp", async () => {
        const { pod, container } = await build("ts-sec");
        assertRestricted(pod, assert);
        const tmp = pod.volumes.find((v: any) => v.name === "tmp");
        assert.equal(tmp.emptyDir.sizeLimit, "2Gi");
        assert.ok(container.volumeMounts.some((m: any) => m.mountPath === "/tmp"));
        const sa = only(T.ServiceAccount, "ts-sec-sa").inputs;
        assert.equal(sa.automountServiceAccountToken, false);
    });

    it("migrates the schema in one Job that the Deployment waits for", async () => {
        const { ts } = await build("ts-migrate");
        const job = only(T.Job, "ts-migrate-migrate").inputs;
        const c = job.spec.template.spec.containers[0];
        // What `mlflow db upgrade` does (upgrade/mlflow_platform_upgrade.py migrate), with libpq's env and the URI.
        assert.deepEqual(c.args, ["python", `${UPGRADE_DIR}/mlflow_platform_upgrade.py`, "migrate"]);
        assert.equal(c.env.find((e: any) => e.name === "BACKEND_STORE_URI").value, BACKEND_STORE_URI);
        assert.equal(c.env.find((e: any) => e.name === "PGHOST").value, "db.ml.svc");
        assert.equal(c.image, DEFAULT_IMAGES.mlflow);
        assertRestricted(job.spec.template.spec, assert);
        // Ordering: the Deployment depends on the Job, so Pulumi creates it only after the Job completes.
        const deployment = only(T.Deployment, "ts-migrate-server");
        assert.ok(deployment.dependencies.includes(await out(ts.migrationJob.urn)), "Deployment must depend on the migration Job");
        // No pod runs migrations itself.
        const dep = only(T.Deployment, "ts-migrate-server").inputs;
        assert.ok(!dep.spec.template.spec.initContainers, "no per-pod migration");
    });

    describe("schema upgrades: no writer on the old schema", () => {
        it("plans, dumps only an upgrade of a schema holding data, then migrates, in one Job of the upgrade ServiceAccount", async () => {
            await build("ts-up");
            const pod = only(T.Job, "ts-up-migrate").inputs.spec.template.spec;
            assert.deepEqual(pod.initContainers.map((c: any) => c.name), ["plan", "install-mc", "dump"]);
            assert.deepEqual(pod.containers.map((c: any) => c.name), ["migrate"]);
            const [plan, install, dump] = pod.initContainers;
            assert.equal(plan.image, DEFAULT_IMAGES.mlflow, "the plan reads the migrations of the image that migrates");
            assert.deepEqual(plan.args, ["python", `${UPGRADE_DIR}/mlflow_platform_upgrade.py`, "plan"]);
            const planEnv = Object.fromEntries(plan.env.map((e: any) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
            assert.equal(planEnv.DEPLOYMENT, "ts-up-server", "the Deployment it scales is the tracking server's");
            assert.equal(planEnv.NAMESPACE, "metadata.namespace");
            assert.equal(planEnv.PLAN_FILE, PLAN_FILE);
            assert.equal(planEnv.PGHOST, "db.ml.svc");
            assert.equal(planEnv.PGPASSWORD, undefined, "the password comes from the mounted secret");
            assert.equal(install.image, preUpgradeDump.uploadImage);
            assert.equal(dump.image, preUpgradeDump.dumpImage);
            const dumpEnv = Object.fromEntries(dump.env.map((e: any) => [e.name, e.value]));
            assert.equal(dumpEnv.DUMP_PREFIX, PRE_UPGRADE_PREFIX);
            assert.equal(dumpEnv.PLAN_FILE, PLAN_FILE);
            assert.equal(dumpEnv.BACKUP_BUCKET, "backups");
            assert.equal(dump.args[2], dumpScript({ test: UPGRADE_PLANNED, skipped: NO_DUMP_NEEDED }), "the nightly backup's script, behind the plan's test");
            assert.match(dump.args[2], /^if ! grep -q '\^upgrade ' "\$PLAN_FILE"; then/);
            const planVolume = dump.volumeMounts.find((m: any) => m.mountPath === PLAN_FILE.replace(/\/plan$/, ""));
            assert.equal(planVolume?.readOnly, true, "the dump step reads the plan the first step wrote");
            // The script the pod runs is the file in the repository.
            const scriptVolume = pod.volumes.find((v: any) => v.name === "upgrade-script");
            const cm = find(T.ConfigMap).find((x) => x.inputs.metadata.name === scriptVolume.configMap.name)!.inputs;
            assert.equal(cm.data["mlflow_platform_upgrade.py"], fs.readFileSync(path.join(ROOT, "components/trackingServer/upgrade/mlflow_platform_upgrade.py"), "utf8"));
            assert.equal(cm.immutable, true);
            assert.equal(pod.serviceAccountName, "ts-up-upgrade");
            assert.ok(pod.volumes.some((v: any) => v.projected?.sources.some((x: any) => x.serviceAccountToken)), "a projected token, automount stays off");
            assert.equal(pod.automountServiceAccountToken, false);
            assertRestricted(pod, assert);
            assert.deepEqual(ephemeralStorageFit(pod).problems, []);
        });

        it("lets only the upgrade ServiceAccount get and scale the one tracking Deployment, and list pods", async () => {
            await build("ts-rbac");
            const role = only(T.Role, "ts-rbac-upgrade-role").inputs;
            assert.deepEqual(role.rules, [
                { apiGroups: ["apps"], resources: ["deployments", "deployments/scale"], resourceNames: ["ts-rbac-server"], verbs: ["get", "patch"] },
                { apiGroups: [""], resources: ["pods"], verbs: ["list"] },
            ]);
            const binding = only(T.RoleBinding, "ts-rbac-upgrade-rolebinding").inputs;
            assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: "ts-rbac-upgrade", namespace: "ml" }], "not the server's own ServiceAccount");
            assert.equal(binding.roleRef.name, role.metadata.name);
            const server = only(T.Deployment, "ts-rbac-server").inputs;
            assert.equal(server.metadata.name, "ts-rbac-server", "named, as the Role names it");
            assert.notEqual(server.spec.template.spec.serviceAccountName, "ts-rbac-upgrade");
            assert.equal(server.metadata.annotations["pulumi.com/patchForce"], "true", "the update after an upgrade takes the replica count back");
        });

        it("scales the server back after the new Deployment, once per migration Job", async () => {
            const { ts } = await build("ts-resume");
            const job = only(T.Job, "ts-resume-upgrade-resume");
            assert.ok(job.dependencies.includes(await out(ts.deployment.urn)), "after the Deployment has rolled");
            const template = job.inputs.spec.template;
            assert.equal(template.metadata.annotations["mlflow-platform.io/after-migration"], await out(ts.migrationJob.metadata.name), "a new migration Job brings a new one");
            const [c] = template.spec.containers;
            assert.deepEqual(c.command, ["python", `${UPGRADE_DIR}/mlflow_platform_upgrade.py`, "resume"]);
            assert.equal(template.spec.serviceAccountName, "ts-resume-upgrade");
            assertRestricted(template.spec, assert);
            const policy = only(T.NetworkPolicy, "ts-resume-upgrade-netpol").inputs;
            assertSelects(policy.spec.podSelector.matchLabels, template.metadata.labels, "its policy selects its pods");
            assert.deepEqual(policy.spec.egress.slice(1).map((e: any) => e.ports[0].port), [443, 6443], "the API server only");
        });
    });

    it("shares one generated Flask secret key across workers and replicas, kept secret", async () => {
        await build("ts-flask");
        const secret = only(T.Secret, "ts-flask-flask").inputs;
        assert.ok(isSecretValue(secret.stringData), "stringData must reach Kubernetes as a secret");
        assert.equal(unsecret(secret.stringData).MLFLOW_FLASK_SERVER_SECRET_KEY.length, 64);
        assert.equal(only(T.RandomPassword, "ts-flask-flask-key").inputs.length, 64);
    });

    it("adds PDB, anti-affinity and a surge-only rollout for several replicas", async () => {
        const { deployment, pod } = await build("ts-ha", { config: { replicas: 3, antiAffinity: "required" } });
        assert.equal(deployment.spec.replicas, 3);
        assert.deepEqual(deployment.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 });
        const term = pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0];
        assert.equal(term.topologyKey, "kubernetes.io/hostname");
        const pdb = only(T.PDB, "ts-ha-pdb").inputs;
        assert.equal(pdb.spec.maxUnavailable, 1);
        assert.equal(pdb.spec.unhealthyPodEvictionPolicy, "AlwaysAllow");
        assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
    });

    it("leaves a single replica without anti-affinity", async () => {
        const { pod } = await build("ts-single");
        assert.equal(pod.affinity, undefined);
    });

    it("hands the replica count to an HPA when autoscaling is on", async () => {
        const { deployment, ts } = await build("ts-hpa", { config: { autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 5, targetCpuPercent: 60 } } });
        assert.equal(deployment.spec.replicas, undefined);
        assert.ok(ts.autoscaler);
        await settle(ts.autoscaler!);
        const hpa = only(T.HPA, "ts-hpa-hpa").inputs;
        assert.equal(hpa.spec.minReplicas, 2);
        assert.equal(hpa.spec.maxReplicas, 5);
        assert.equal(hpa.spec.scaleTargetRef.kind, "Deployment");
        assert.ok(deployment.spec.template.spec.affinity, "autoscaled pods spread too");
    });

    it("creates no HPA when autoscaling is off", async () => {
        const { deployment, ts } = await build("ts-fixed");
        assert.equal(deployment.spec.replicas, 1);
        assert.equal(ts.autoscaler, undefined);
        assert.equal(find(T.HPA).length, 0);
    });

    it("admits only the ingress controller, Prometheus and labelled clients, and reaches only DB, S3 and DNS", async () => {
        const { deployment } = await build("ts-net");
        const policy = only(T.NetworkPolicy, "ts-net-netpol").inputs;
        assert.deepEqual(policy.spec.policyTypes, ["Ingress", "Egress"]);
        const podLabels = deployment.spec.template.metadata.labels;
        assertSelects(policy.spec.podSelector.matchLabels, podLabels, "policy must select the server pods");
        const from = policy.spec.ingress[0].from;
        assert.deepEqual(from.map((f: any) => f.namespaceSelector?.matchLabels["kubernetes.io/metadata.name"]).filter(Boolean), ["ingress-nginx", "monitoring"]);
        assert.deepEqual(from[0].podSelector.matchLabels, { "mlflow-platform.io/tracking-client": "true" });
        assert.deepEqual(policy.spec.ingress[0].ports, [{ protocol: "TCP", port: 5000 }]);
        assert.deepEqual(policy.spec.egress.slice(1), [dbEgress, s3Egress]);
        assert.equal(policy.spec.egress[0].ports[0].port, 53, "DNS first");
        // The pods carry the capability labels the DB and MinIO policies admit.
        assert.equal(podLabels["mlflow-platform.io/database-client"], "true");
        assert.equal(podLabels["mlflow-platform.io/artifacts-client"], "true");
        const migrate = only(T.NetworkPolicy, "ts-net-migrate-netpol").inputs;
        assert.deepEqual(migrate.spec.ingress, []);
        // The database, the backup bucket (the dump before an upgrade) and the API server (to stop the writers).
        assert.deepEqual(migrate.spec.egress.slice(1, 3), [dbEgress, preUpgradeDump.store.clientEgress]);
        assert.deepEqual(migrate.spec.egress.slice(3).map((e: any) => [e.to[0].ipBlock.cidr, e.ports[0].port]), [["0.0.0.0/0", 443], ["0.0.0.0/0", 6443]]);
        const job = only(T.Job, "ts-net-migrate").inputs.spec.template.metadata.labels;
        assertSelects(migrate.spec.podSelector.matchLabels, job, "migrate policy must select the migration job pods");
    });

    it("exposes the in-cluster tracking URI of its Service", async () => {
        const { ts } = await build("ts-uri");
        assert.equal(await out(ts.trackingUri), "http://ts-uri-tracking.ml.svc:5000");
        const svc = only(T.Service, "ts-uri-svc").inputs;
        assert.equal(svc.spec.ports[0].port, 5000);
        assert.equal(svc.spec.type, "ClusterIP");
    });
});

