// The manifest → process mapping of `npm run local`, on the dev stack as `npm run render --show-secrets`
// writes it: no service is started (one render in a child process, a few short /bin/sh processes).
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse } from "yaml";
import { controllerValues, ingressAnnotations } from "../../components/authIngress/nginx";
import { ingressSchema } from "../../components/authIngress/schema";
import { secretEnvEntrypoint } from "../../components/kube";
import { MLFLOW_MIN_VERSION, MLFLOW_PREVIOUS_VERSION, MLFLOW_VERSION } from "../../components/images";
import { KSERVE_VERSION } from "../../components/modelServing/kserve";
import { MLSERVER_VERSION } from "../../components/images";
import type { KubeObject } from "../../scripts/lib/manifests";
import { httpDirectives, locationDirectives } from "../../scripts/lib/nginx";
import { Layout } from "../../scripts/local/layout";
import {
    componentOf,
    containerEnv,
    containerProcess,
    expandVariableRefs,
    servicePortKey,
    LocalService,
    localMounts,
    localPortsFor,
    localVolumes,
    PodIdentity,
    LOCAL_LIMITS,
    mountParents,
    replaceFlagValue,
    rewritePaths,
    rewriteServiceAddresses,
    standInFor,
    STAND_INS,
    ToolPaths,
    mlflowVenvFor,
} from "../../scripts/local/mapping";
import { ruleFile, sanitizeLabel, scrapeJobs, selectorMatches } from "../../scripts/local/prometheus";
import { gunzipSync } from "zlib";
import { controllerBundle } from "../../components/deployController/bundle";
import { desiredModel, kserveS3Env, mlserverProcess, servingIdentity } from "../../scripts/local/serving";
import { PodSpec, RenderedStack } from "../../scripts/local/stack";
import { Supervisor } from "../../scripts/local/supervisor";
import { parseToolEnv } from "../../scripts/local/tools";
import { ROOT } from "../harness";
import {
    deployControllerConfig,
    ingressLogin,
    minioServer,
    postgresCreateDatabase,
    postgresInitdb,
    postgresServer,
    setPostgresSetting,
    trackingServer,
    workloadOf,
    workloadsOf,
} from "../../scripts/local/workloads";

const TOOLS: ToolPaths = { bin: "/cache/bin", pgBin: "/usr/lib/postgresql/15/bin", mlflowVenv: "/cache/venvs/mlflow", mlflowPreviousVenv: "/cache/venvs/mlflow-previous", mlserverVenv: "/cache/venvs/mlserver" };

/** Renders a stack the way `npm run render` does, in its own process (the program runs once per process). */
function renderStackFiles(stack: string, dir: string, stackDir = ROOT): RenderedStack {
    const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/render.ts", "--stack", stack, "--stack-dir", stackDir, "--out", dir, "--show-secrets", "--seed", "local-spec"], {
        cwd: ROOT,
        encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return new RenderedStack(fs.readdirSync(dir).map((f) => parse(fs.readFileSync(path.join(dir, f), "utf8"), { version: "1.1" }) as KubeObject));
}

/** Loopback ports for every Service port of the stack: 20000 + the in-cluster port. */
function loopbackServices(stack: RenderedStack): LocalService[] {
    return (stack.find("Service") as any[]).map((s) => ({
        name: s.metadata.name,
        namespace: s.metadata.namespace,
        ports: s.spec.ports.map((p: any) => ({ name: p.name, port: p.port, localPort: 20000 + p.port })),
    }));
}


/** A pod's spec as the StatefulSet controller makes it: each claim template a volume of the pod's own claim. */
function withClaims(spec: PodSpec, claims: Record<string, string>): PodSpec {
    return { ...spec, volumes: [...(spec.volumes ?? []), ...Object.entries(claims).map(([name, claimName]) => ({ name, persistentVolumeClaim: { claimName } }))] };
}

describe("npm run local: manifest → process mapping", function () {
    this.timeout(60_000);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "local-spec-"));
    let dev: RenderedStack;
    let services: LocalService[];
    before(() => {
        dev = renderStackFiles("dev", path.join(tmp, "dev"));
        services = loopbackServices(dev);
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    /** Lays out a workload's volumes under tmp and maps its first container. */
    function mapped(kind: string, name: string, claims: Record<string, string> = {}, identity?: PodIdentity) {
        const pod = dev.podTemplate(kind, name);
        const layout = new Layout(path.join(tmp, "local"));
        const dirs = layout.materialize(name, localVolumes(withClaims(pod.spec, claims), dev, identity));
        const container = pod.spec.containers[0];
        const mounts = localMounts(container, dirs);
        const ctx = { stack: dev, component: componentOf(pod.metadata?.labels), services, mounts, mountTree: layout.mountTree(name, container.name, mounts), tools: TOOLS, defaultCwd: layout.pod(name) };
        return { pod, container, dirs, layout, spec: containerProcess(container, ctx) };
    }

    describe("Service addresses", () => {
        const svc: LocalService[] = [{ name: "mlflow-minio", namespace: "ns", ports: [{ port: 9000, localPort: 41000 }] }];
        it("maps every in-cluster name of a Service, with its port, to loopback", () => {
            for (const host of ["mlflow-minio.ns.svc.cluster.local", "mlflow-minio.ns.svc", "mlflow-minio.ns", "mlflow-minio"]) {
                assert.equal(rewriteServiceAddresses(`http://${host}:9000/x`, svc), "http://127.0.0.1:41000/x");
            }
            assert.equal(rewriteServiceAddresses("mlflow-minio.ns.svc", svc), "127.0.0.1");
        });
        it("leaves a bare name without a port alone, and other hosts too", () => {
            assert.equal(rewriteServiceAddresses("mlflow-minio", svc), "mlflow-minio");
            assert.equal(rewriteServiceAddresses("http://mlflow-minio.other.svc:9000", svc), "http://mlflow-minio.other.svc:9000");
            assert.equal(rewriteServiceAddresses("s3://mlflow-minio-bucket/x", svc), "s3://mlflow-minio-bucket/x");
        });
        it("refuses a port the Service does not expose", () => {
            assert.throws(() => rewriteServiceAddresses("http://mlflow-minio.ns.svc:9001", svc), /has no port 9001/);
        });
    });

    describe("Service ports", () => {
        it("stands an ExternalName to a KServe predictor Service in for the model server's http port, and refuses any other", () => {
            const svc = (externalName: string) => ({ metadata: { name: "mlflow-edge-wine", namespace: "ns" }, spec: { type: "ExternalName", externalName } });
            assert.equal(servicePortKey({ metadata: { name: "mlflow-tracking" }, spec: {} }, 5000), "svc/mlflow-tracking/5000");
            assert.equal(servicePortKey(svc("wine-predictor.ns.svc.cluster.local"), 80), "isvc/wine/http");
            for (const other of ["example.com", "wine-predictor.other.svc.cluster.local", "wine.ns.svc.cluster.local"]) {
                assert.throws(() => servicePortKey(svc(other), 80), /is mapped locally only to a KServe predictor Service of its namespace/, other);
            }
        });
    });

    describe("variable references and the downward API, as the kubelet expands them", () => {
        it("expands $(VAR) of a defined variable, keeps an undefined one, and reads $$ as a literal $", () => {
            const env = { POD_IP: "127.0.0.1", A: "x" };
            assert.equal(expandVariableRefs("h,$(POD_IP):5000", env), "h,127.0.0.1:5000");
            assert.equal(expandVariableRefs("$(A)$(A)-$(NOPE)", env), "xx-$(NOPE)");
            assert.equal(expandVariableRefs("$$(POD_IP) $$", env), "$(POD_IP) $");
            // Shell command substitutions are not references: they carry spaces or quotes.
            assert.equal(expandVariableRefs('export "$(basename "$f")=$(cat "$f")"', env), 'export "$(basename "$f")=$(cat "$f")"');
        });
        it("sets a variable the API server stored without a value (it drops an empty one) to the empty string, as the kubelet does", () => {
            const ctx = { stack: dev, component: "trackingServer", services: [], mounts: [], tools: TOOLS, defaultCwd: "/l" };
            assert.equal(containerEnv({ name: "mlflow", image: "i", env: [{ name: "DUMP_PREFIX" }] }, ctx).DUMP_PREFIX, "");
        });
        it("gives a fieldRef of status.podIP the loopback address, of metadata.namespace the stack's, and refuses a field it cannot map", () => {
            const ctx = { stack: dev, component: "trackingServer", services: [], mounts: [], tools: TOOLS, defaultCwd: "/l" };
            const env = (fieldPath: string) => containerEnv({ name: "mlflow", image: "i", env: [{ name: "IP", valueFrom: { fieldRef: { fieldPath } } }, { name: "URL", value: "http://$(IP):1" }] }, ctx);
            assert.deepEqual([env("status.podIP").IP, env("status.podIP").URL], ["127.0.0.1", "http://127.0.0.1:1"]);
            assert.equal(env("metadata.namespace").IP, "mlflow-dev");
            assert.throws(() => env("spec.nodeName"), /env IP of mlflow: only value, secretKeyRef and fieldRef metadata\.namespace, status\.podIP are mapped locally/);
        });
    });

    describe("mounted paths", () => {
        const mounts = [
            { mountPath: "/var/lib/postgresql/data", localPath: "/l/data" },
            { mountPath: "/tmp", localPath: "/l/run/tmp" },
            { mountPath: "/run/secrets/users/readwrite", localPath: "/l/rw" },
        ];
        it("maps paths under a mount in one pass (a replacement under /tmp is not rewritten again)", () => {
            assert.equal(rewritePaths("/var/lib/postgresql/data/pgdata", [...mounts, { mountPath: "/l", localPath: "/x" }]), "/l/data/pgdata");
            assert.equal(rewritePaths("MC_CONFIG_DIR=/tmp/.mc", mounts), "MC_CONFIG_DIR=/l/run/tmp/.mc");
        });
        it("maps whole path components only", () => {
            assert.equal(rewritePaths("/var/tmp/x /tmpfoo", mounts), "/var/tmp/x /tmpfoo");
        });
        it("maps a directory that only holds mounts to the mount tree", () => {
            assert.deepEqual(mountParents(mounts).sort(), ["/run", "/run/secrets", "/run/secrets/users", "/var", "/var/lib", "/var/lib/postgresql"]);
            assert.equal(rewritePaths("/run/secrets/users", mounts, "/tree"), "/tree/run/secrets/users");
            assert.equal(rewritePaths("/run/secrets/other/file", mounts, "/tree"), "/run/secrets/other/file");
        });
    });

    /** `<component>/<container>` of every container the stack runs, and the ServingRuntime's. */
    function containersOf(stack: RenderedStack): string[] {
        const out = new Set<string>();
        for (const kind of ["Deployment", "StatefulSet", "Job", "CronJob"]) {
            for (const o of stack.find(kind)) {
                const pod = stack.podTemplate(kind, o.metadata.name);
                for (const c of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) out.add(`${componentOf(pod.metadata?.labels)}/${c.name}`);
            }
        }
        for (const o of stack.find("ServingRuntime") as any[]) for (const c of o.spec.containers) out.add(`${componentOf(o.metadata.labels)}/${c.name}`);
        return [...out].sort();
    }

    it("stands in for every container the stack runs, by component and container name, and nothing else", () => {
        assert.deepEqual(containersOf(dev), Object.keys(STAND_INS).sort());
        assert.throws(() => standInFor("objectStore", "sidecar"), /no local stand-in/);
    });

    it("finds workloads by component, so images mirrored under other names run the same", () => {
        // The dev stack with every image from a private registry on a port, as components/images.ts invites.
        const stackDir = path.join(tmp, "mirror-stack");
        fs.mkdirSync(stackDir, { recursive: true });
        const mirror = (repo: string) => `registry.local:5000/mirror/${repo}`;
        const file = parse(fs.readFileSync(path.join(ROOT, "Pulumi.dev.yaml"), "utf8"));
        const c = file.config;
        c["mlflow-platform:database"] = { ...c["mlflow-platform:database"], image: mirror("postgres:17.6-bookworm") };
        c["mlflow-platform:objectStore"] = { ...c["mlflow-platform:objectStore"], image: mirror("minio:2025-10-15"), clientImage: mirror("mc:2025-08-13") };
        c["mlflow-platform:tracking"] = { ...c["mlflow-platform:tracking"], image: mirror("mlflow:v3.17.2-full") };
        c["mlflow-platform:serving"] = { ...c["mlflow-platform:serving"], runtimeImage: mirror("mlserver:1.7.1-mlflow") };
        c["mlflow-platform:deployController"] = { ...c["mlflow-platform:deployController"], image: mirror("node:20.20.2") };
        fs.writeFileSync(path.join(stackDir, "Pulumi.mirror.yaml"), JSON.stringify(file));
        const mirrored = renderStackFiles("mirror", path.join(tmp, "mirror"), stackDir);
        const images = (stack: RenderedStack) => stack.objects.flatMap((o) => JSON.stringify(o).match(/"image":"[^"]+"/g) ?? []);
        assert.ok(images(mirrored).length > 5 && images(mirrored).every((i) => i.includes("registry.local:5000/mirror/")), "every image is mirrored");
        assert.deepEqual(containersOf(mirrored), containersOf(dev));
        // Each workload is found, and every container maps to the same program, as in the unmirrored stack.
        const mirrorServices = loopbackServices(mirrored);
        for (const [kind, component] of [["StatefulSet", "database"], ["StatefulSet", "objectStore"], ["Job", "objectStore"], ["Job", "trackingServer"], ["Deployment", "trackingServer"], ["Deployment", "deployController"], ["CronJob", "databaseBackup"]]) {
          const names = workloadsOf(mirrored, kind, component).map((w) => w.name);
          assert.deepEqual(names, workloadsOf(dev, kind, component).map((w) => w.name));
          assert.ok(names.length > 0, `${kind} of ${component}`);
          for (const name of names) {
            const pod = mirrored.podTemplate(kind, name);
            const dirs = new Layout(path.join(tmp, "mirror-local")).materialize(name, localVolumes(withClaims(pod.spec, kind === "StatefulSet" ? { data: "data" } : {}), mirrored, { token: "t", namespace: "ns", ca: "CA" }));
            for (const container of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) {
                const mounts = localMounts(container, dirs);
                const spec = containerProcess(container, { stack: mirrored, component, services: mirrorServices, mounts, tools: TOOLS, defaultCwd: "/l" });
                assert.equal(spec.env.PATH.split(":")[0], standInFor(component, container.name).path(TOOLS, container.image!)[0], `${kind} ${name} ${container.name}`);
            }
          }
        }
        assert.equal(workloadsOf(mirrored, "Deployment", "monitoring").length, 0);
    });

    it("runs the tracking server with the container's args and env, Services on loopback, through secretEnvEntrypoint", () => {
        const { name } = workloadOf(dev, "Deployment", "trackingServer");
        const { spec, dirs, container } = mapped("Deployment", name);
        assert.deepEqual(spec.argv.slice(0, 4), secretEnvEntrypoint(dirs["secret-env"]));
        const server = trackingServer(spec, 25000, ["http://127.0.0.1:28080", "http://mlflow.dev.local:28080"]);
        const args = server.argv.slice(4);
        const original = container.args!;
        const valueOf = (argv: string[], flag: string) => argv[argv.indexOf(flag) + 1];
        const hostsOf = (argv: string[]) => valueOf(argv, "--allowed-hosts").split(",");
        let expectedArgs = replaceFlagValue(replaceFlagValue(original, "--host", "127.0.0.1"), "--port", "25000");
        expectedArgs = replaceFlagValue(expectedArgs, "--allowed-hosts", hostsOf(args).join(","));
        expectedArgs = replaceFlagValue(expectedArgs, "--cors-allowed-origins", valueOf(args, "--cors-allowed-origins"));
        assert.deepEqual(args, expectedArgs.map((a) => (a === "/mlflow/metrics" ? dirs.prometheus : a)));
        // The local edge's origins (loopback and the public host, on its port) join the edge's public one; the port-forward's move with the pod's port.
        assert.equal(valueOf(args, "--cors-allowed-origins"), "http://mlflow.dev.local,http://localhost:25000,http://127.0.0.1:25000,http://127.0.0.1:28080,http://mlflow.dev.local:28080");
        assert.equal(valueOf(args, "--app-name"), "mlflow-platform-guard");
        assert.equal(server.env.PYTHONPATH, dirs.guard);
        // The pod's port moved, and the Host entries that name it moved with it; $(POD_IP) is loopback.
        const expected = hostsOf(original).map((h) => h.replace(/:5000$/, ":25000").replace("$(POD_IP)", "127.0.0.1"));
        assert.deepEqual(hostsOf(args), expected);
        assert.ok(hostsOf(args).includes("127.0.0.1:25000") && !hostsOf(args).some((h) => h.endsWith(":5000")));
        // Reached through its Service's loopback port too (the Service proxy): the entries naming the pod's
        // port name both, so the Host a client sends through the Service passes the guard.
        const proxied = hostsOf(trackingServer(spec, 25100, [], [25000]).argv);
        const both = (h: string) => (h.endsWith(":5000") ? [h.replace(/:5000$/, ":25100"), h.replace(/:5000$/, ":25000")] : [h]);
        assert.deepEqual(proxied, hostsOf(original).flatMap(both).map((h) => h.replace("$(POD_IP)", "127.0.0.1")));
        assert.equal(server.env.POD_IP, "127.0.0.1");
        assert.equal(server.env.PGHOST, "127.0.0.1");
        assert.equal(server.env.PGPORT, String(20000 + 5432));
        assert.equal(server.env.MLFLOW_S3_ENDPOINT_URL, `http://127.0.0.1:${20000 + 9000}`);
        assert.equal(server.env.HOME, dirs.tmp);
        assert.equal(server.cwd, dirs.tmp);
        assert.ok(server.env.PATH.startsWith("/cache/venvs/mlflow/bin:"));
        // The secret files the entrypoint exports: exactly the projected keys, with the Secrets' values.
        assert.deepEqual(fs.readdirSync(dirs["secret-env"]).sort(), ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", "PGPASSWORD"]);
        assert.equal(fs.readFileSync(path.join(dirs["secret-env"], "PGPASSWORD"), "utf8"), dev.secretData("mlflow-database").password);
        assert.equal(fs.statSync(path.join(dirs["secret-env"], "PGPASSWORD")).mode & 0o777, 0o440);
    });

    it("exports the secret files as env exactly as the container's entrypoint does", () => {
        const dir = fs.mkdtempSync(path.join(tmp, "env-"));
        fs.writeFileSync(path.join(dir, "PGPASSWORD"), "p@ss:/%#w0rd()");
        const [sh, c, script, name] = secretEnvEntrypoint(dir);
        const r = spawnSync(sh, [c, script, name, "/bin/sh", "-c", 'printf %s "$PGPASSWORD"'], { encoding: "utf8" });
        assert.equal(r.stdout, "p@ss:/%#w0rd()");
    });

    it("runs PostgreSQL with the container's durability settings, on loopback, from the image's entrypoint semantics", () => {
        const { name } = workloadOf(dev, "StatefulSet", "database");
        const { spec, dirs } = mapped("StatefulSet", name, { data: `data-${name}-0` });
        assert.equal(spec.argv[0], "/usr/lib/postgresql/15/bin/postgres");
        assert.equal(spec.env.PGDATA, path.join(dirs.data, "pgdata"));
        assert.equal(spec.env.POSTGRES_PASSWORD_FILE, path.join(dirs.credentials, "password"));
        const server = postgresServer(spec, 25432, dirs.run);
        const settings = server.argv.slice(1).join(" ");
        for (const s of ["fsync=on", "synchronous_commit=on", "full_page_writes=on", "max_connections=100"]) assert.match(settings, new RegExp(`-c ${s}`));
        assert.doesNotMatch(settings, /listen_addresses=\*/);
        assert.match(settings, /-c listen_addresses=127\.0\.0\.1 -c port=25432 -c unix_socket_directories=/);
        const initdb = postgresInitdb(spec, TOOLS.pgBin).argv;
        assert.ok(initdb.includes(`--username=${spec.env.POSTGRES_USER}`) && initdb.includes(`--pwfile=${spec.env.POSTGRES_PASSWORD_FILE}`));
        assert.ok(initdb.includes("--auth-host=scram-sha-256"), "127.0.0.1 clients must need the password, like pods do");
        const createdb = postgresCreateDatabase(spec, TOOLS.pgBin, 25432, "pw");
        assert.equal(createdb.env.POSTGRES_DB, "mlflow");
        assert.doesNotMatch(createdb.argv[2], /mlflow/, "the database name travels as a psql variable");
        assert.deepEqual(setPostgresSetting(["-c", "a=1", "-c", "b=2"], "a", "3"), ["-c", "b=2", "-c", "a=3"]);
    });

    it("never maps the stand-in's own path, even under a directory the container mounts over", () => {
        const { name } = workloadOf(dev, "StatefulSet", "objectStore");
        const pod = dev.podTemplate("StatefulSet", name);
        const container = pod.spec.containers[0];
        const mounts = [{ mountPath: "/tmp", localPath: "/l/tmp" }, { mountPath: "/data", localPath: "/l/data" }, { mountPath: "/run/secrets/minio", localPath: "/l/root" }];
        const spec = containerProcess(container, { stack: dev, component: "objectStore", services, mounts, tools: { ...TOOLS, bin: "/tmp/cache/bin" }, defaultCwd: "/l" });
        assert.deepEqual(spec.argv.slice(0, 3), ["/tmp/cache/bin/minio", "server", "/l/data"]);
        assert.equal(spec.env.HOME, "/l/tmp");
        assert.ok(spec.env.PATH.startsWith("/tmp/cache/bin:"));
    });

    it("runs MinIO with its config.env file and on the Service's loopback port", () => {
        const { name } = workloadOf(dev, "StatefulSet", "objectStore");
        const { spec, dirs } = mapped("StatefulSet", name, { data: `data-${name}-0` });
        const server = minioServer(spec, 29000);
        assert.deepEqual(server.argv, ["/cache/bin/minio", "server", dirs.data, "--address", "127.0.0.1:29000"]);
        assert.equal(server.env.MINIO_CONFIG_ENV_FILE, path.join(dirs.root, "config.env"));
        assert.match(fs.readFileSync(server.env.MINIO_CONFIG_ENV_FILE, "utf8"), /^MINIO_ROOT_USER=.+\nMINIO_ROOT_PASSWORD=.+\n$/);
        assert.equal(server.env.MINIO_BROWSER, "off");
    });

    it("runs the provisioning Job's script with the endpoint on loopback and the secret directories as files", () => {
        const { name } = workloadOf(dev, "Job", "objectStore");
        const { spec, dirs, layout } = mapped("Job", name);
        assert.equal(spec.argv[0], "/bin/sh");
        assert.equal(spec.env.MINIO_ENDPOINT, `http://127.0.0.1:${20000 + 9000}`);
        assert.equal(spec.env.ROOT_DIR, dirs.root);
        assert.equal(spec.env.CREDS_DIR, path.join(layout.pod(name), ".mounts-provision", "run/secrets/users"));
        assert.equal(fs.readFileSync(path.join(spec.env.CREDS_DIR, "readonly", "AWS_ACCESS_KEY_ID"), "utf8"), "mlflow-serving");
        assert.ok(fs.existsSync(path.join(spec.env.POLICY_DIR, "readwrite.json")));
        assert.equal(spec.env.MC_CONFIG_DIR, path.join(dirs.tmp, ".mc"));
    });

    it("binds each workload to the loopback port of the Service that targets its container port", () => {
        const { name, container } = workloadOf(dev, "Deployment", "trackingServer");
        assert.deepEqual(localPortsFor(dev.podTemplate("Deployment", name).metadata!.labels!, container, dev, services), { 5000: 25000 });
    });

    it("gives the storage initializer the env KServe derives from the s3-* annotations and the read-only Secret", () => {
        const id = servingIdentity(dev);
        const env = kserveS3Env(id.annotations, id.secret);
        assert.deepEqual(env, {
            AWS_ACCESS_KEY_ID: "mlflow-serving",
            AWS_SECRET_ACCESS_KEY: dev.secretData("mlflow-artifacts-readonly").AWS_SECRET_ACCESS_KEY,
            S3_USE_HTTPS: "0",
            S3_ENDPOINT: "mlflow-minio.mlflow-dev.svc:9000",
            AWS_ENDPOINT_URL: "http://mlflow-minio.mlflow-dev.svc:9000",
            S3_VERIFY_SSL: "0",
            AWS_DEFAULT_REGION: "us-east-1",
        });
        assert.equal(rewriteServiceAddresses(env.S3_ENDPOINT, services), "127.0.0.1:29000");
        const https = kserveS3Env({ "serving.kserve.io/s3-endpoint": "s3.example.com" }, { AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b" });
        assert.equal(https.AWS_ENDPOINT_URL, "https://s3.example.com");
        assert.equal(https.S3_USE_HTTPS, undefined);
    });

    it("starts MLServer as the ServingRuntime says, templated for the InferenceService, on loopback", () => {
        const runtime = (dev.only("ServingRuntime") as any).spec.containers[0];
        const dirs = { tmp: "/l/tmp", "kserve-provision-location": "/l/models" };
        const spec = mlserverProcess(runtime, "wine-quality", { http: 28080, grpc: 29001, metrics: 28082 }, { stack: dev, component: "modelServing", services, volumeDirs: dirs, tools: TOOLS, defaultCwd: "/l" });
        assert.deepEqual(spec.argv, ["mlserver", "start", "/l/models"]);
        assert.equal(spec.env.MLSERVER_MODEL_NAME, "wine-quality");
        assert.equal(spec.env.MLSERVER_MODEL_URI, "/l/models");
        assert.equal(spec.env.MLSERVER_MODEL_IMPLEMENTATION, "mlserver_mlflow.MLflowRuntime");
        assert.deepEqual([spec.env.MLSERVER_HTTP_PORT, spec.env.MLSERVER_GRPC_PORT, spec.env.MLSERVER_METRICS_PORT], ["28080", "29001", "28082"]);
        assert.equal(spec.env.MLSERVER_HOST, "127.0.0.1");
        assert.equal(spec.env.MLSERVER_METRICS_DIR, "/l/tmp/mlserver/metrics");
        assert.equal(spec.cwd, "/l/tmp");
        assert.ok(spec.env.PATH.startsWith("/cache/venvs/mlserver/bin:"));
    });

    describe("the deploy controller", () => {
        const identity = { token: "local-token", namespace: "mlflow-dev", ca: "-----BEGIN CERTIFICATE-----\nlocal CA\n-----END CERTIFICATE-----\n" };
        const controller = () => mapped("Deployment", workloadOf(dev, "Deployment", "deployController").name, {}, identity);

        it("runs node on the bundle of its ConfigMap (binaryData decoded), with the projected token and namespace", () => {
            const { spec, dirs } = controller();
            assert.deepEqual(spec.argv.slice(0, 3), ["node", "--max-old-space-size=160", path.join(dirs.code, "boot.js")]);
            assert.equal(spec.argv[spec.argv.indexOf("--config") + 1], path.join(dirs.code, "config.json"));
            assert.ok(spec.env.PATH.startsWith(`${path.dirname(process.execPath)}:`));
            assert.equal(spec.env.HOME, dirs.tmp);
            assert.ok(gunzipSync(fs.readFileSync(path.join(dirs.code, "controller.js.gz"))).equals(Buffer.from(controllerBundle().js)), "the mounted bundle is not the built one");
            assert.equal(fs.readFileSync(path.join(dirs["kube-api-access"], "token"), "utf8"), "local-token");
            assert.equal(fs.readFileSync(path.join(dirs["kube-api-access"], "namespace"), "utf8"), "mlflow-dev");
            assert.equal(fs.readFileSync(path.join(dirs["kube-api-access"], "ca.crt"), "utf8"), "-----BEGIN CERTIFICATE-----\nlocal CA\n-----END CERTIFICATE-----\n");
            assert.equal(fs.statSync(path.join(dirs["kube-api-access"], "token")).mode & 0o777, 0o440);
        });

        it("needs the pod identity for a service-account token projection", () => {
            const pod = dev.podTemplate("Deployment", workloadOf(dev, "Deployment", "deployController").name);
            assert.throws(() => localVolumes(pod.spec, dev), /volume kube-api-access: a serviceAccountToken projection needs the pod's identity/);
        });

        it("maps its config: tracking Service, webhook URL and secret file to loopback and local paths, the API server to the local one, verified by the projected CA", () => {
            const { spec, dirs, pod, container } = controller();
            const rendered = fs.readFileSync(spec.argv[spec.argv.indexOf("--config") + 1], "utf8");
            const mounts = localMounts(container, dirs);
            const ports = localPortsFor(pod.metadata!.labels!, container, dev, services);
            assert.deepEqual(ports, { 8080: 28080, 9090: 29090 });
            const cfg = deployControllerConfig(rendered, { services, mounts, webhookPort: 28080, metricsPort: 29090, kubeApiUrl: "http://127.0.0.1:4444" });
            const original = JSON.parse(rendered);
            assert.equal(cfg.mlflow.trackingUri, "http://127.0.0.1:25000");
            assert.equal(cfg.webhook.register.url, "http://127.0.0.1:28080/webhooks/mlflow");
            assert.equal(cfg.webhook.secretFile, path.join(dirs["webhook-secret"], "secret"));
            assert.equal(fs.readFileSync(cfg.webhook.secretFile, "utf8"), dev.secretData("mlflow-deploy-controller-webhook").secret);
            assert.deepEqual(cfg.http, { ...original.http, host: "127.0.0.1", webhookPort: 28080, metricsPort: 29090 });
            assert.deepEqual(cfg.kubernetes, { ...original.kubernetes, server: "http://127.0.0.1:4444", tokenFile: path.join(dirs["kube-api-access"], "token"), caFile: path.join(dirs["kube-api-access"], "ca.crt") });
            // What the controller follows and creates is passed through untouched.
            assert.deepEqual(cfg.models, original.models);
            assert.equal(cfg.models[0].target.template.spec.predictor.model.runtime, "mlflow-runtime");
            assert.throws(
                () => deployControllerConfig(rendered, { services, mounts: mounts.filter((m) => m.mountPath !== "/var/run/secrets/kubernetes.io/serviceaccount"), metricsPort: 1, webhookPort: 2, kubeApiUrl: "x" }),
                /does not mount a service-account token/,
            );
            assert.throws(() => deployControllerConfig(rendered, { services, mounts, metricsPort: 1, kubeApiUrl: "x" }), /receives webhooks but its Service has no webhook port/);
        });

        it("serves what an InferenceService the controller created asks for: storageUri, runtime, identity, version", () => {
            const { spec } = controller();
            const cfg = JSON.parse(fs.readFileSync(spec.argv[spec.argv.indexOf("--config") + 1], "utf8"));
            const template = cfg.models[0].target.template;
            const created = { apiVersion: "serving.kserve.io/v1beta1", kind: "InferenceService", metadata: { ...template.metadata, name: "wine-quality", namespace: "mlflow-dev" }, spec: template.spec };
            assert.equal(desiredModel(created), undefined, "no storageUri yet: nothing to serve");
            const patched = {
                ...created,
                metadata: { ...created.metadata, annotations: { ...created.metadata.annotations, "mlflow-platform/model-version": "3" } },
                spec: { predictor: { ...created.spec.predictor, model: { ...created.spec.predictor.model, storageUri: "s3://mlflow/1/models/m-1/artifacts" } } },
            };
            assert.deepEqual(desiredModel(patched), {
                isvc: "wine-quality",
                storageUri: "s3://mlflow/1/models/m-1/artifacts",
                runtime: "mlflow-runtime",
                serviceAccountName: "mlflow-serving",
                registeredModel: "wine-quality",
                version: "3",
            });
            assert.equal(servingIdentity(dev, desiredModel(patched)!.serviceAccountName).serviceAccount, "mlflow-serving");
            const noRuntime = { ...patched, spec: { predictor: { model: { storageUri: "s3://b/x" } } } };
            assert.throws(() => desiredModel(noRuntime), /InferenceService wine-quality: predictor\.model\.runtime is not set/);
        });
    });

    it("scrapes what the ServiceMonitor selects with prometheus-operator's labels, and model servers the PodMonitor selects", () => {
        const pods = [{ name: "wine-predictor-local", namespace: "mlflow-dev", labels: { "serving.kserve.io/inferenceservice": "wine", component: "predictor" }, ports: { metrics: 28082, http: 28080 }, container: "kserve-container" }];
        const { jobs, targets } = scrapeJobs(dev, services, pods, "/t");
        const tracking = jobs.find((j) => j.job_name === "serviceMonitor/mlflow-dev/mlflow-tracking/0")!;
        assert.deepEqual([tracking.scrape_interval, tracking.scrape_timeout, tracking.metrics_path], ["30s", "10s", "/metrics"]);
        const [group] = targets["serviceMonitor_mlflow-dev_mlflow-tracking_0.json"];
        assert.deepEqual(group.targets, ["127.0.0.1:25000"]);
        assert.equal(group.labels.job, "mlflow-tracking");
        assert.equal(group.labels.namespace, "mlflow-dev");
        const [model] = targets["podMonitor_mlflow-dev_mlflow-model-servers_0.json"];
        assert.deepEqual(model.targets, ["127.0.0.1:28082"]);
        assert.equal(model.labels.job, "mlflow-dev/mlflow-model-servers");
        assert.equal(model.labels[sanitizeLabel("serving.kserve.io/inferenceservice")], "wine");
        assert.equal(selectorMatches({ matchExpressions: [{ key: "a", operator: "DoesNotExist" }] }, { a: "1" }), false);
        const rules = parse(ruleFile(dev));
        assert.ok(rules.groups.some((g: any) => g.rules.some((r: any) => r.alert === "MlflowTrackingDown")));
    });

    it("logs in as the ingress's first user, with the password of its credentials Secret", () => {
        assert.deepEqual(ingressLogin(dev), { user: "mlflow", password: dev.secretData("mlflow-ingress-credentials").mlflow });
    });

    it("maps or names as a local limit every field of every rendered pod", () => {
        const mappedContainer = new Set(["name", "image", "command", "args", "env", "ports", "volumeMounts", "workingDir", "lifecycle", "startupProbe", "readinessProbe", "livenessProbe"]);
        const limitOf: Record<string, keyof typeof LOCAL_LIMITS> = {
            resources: "resources",
            securityContext: "securityContext",
            imagePullPolicy: "images",
            serviceAccountName: "serviceAccounts",
            automountServiceAccountToken: "serviceAccounts",
            affinity: "scheduling",
        };
        const mappedPod = new Set(["containers", "initContainers", "volumes", "restartPolicy", "terminationGracePeriodSeconds"]);
        for (const kind of ["Deployment", "StatefulSet", "Job", "CronJob"]) {
            for (const o of dev.find(kind)) {
                const spec = dev.podTemplate(kind, o.metadata.name).spec;
                for (const k of Object.keys(spec)) assert.ok(mappedPod.has(k) || (limitOf[k] && LOCAL_LIMITS[limitOf[k]]), `${kind} ${o.metadata.name}: pod field ${k}`);
                for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
                    for (const k of Object.keys(c)) assert.ok(mappedContainer.has(k) || (limitOf[k] && LOCAL_LIMITS[limitOf[k]]), `${kind} ${o.metadata.name}/${c.name}: field ${k}`);
                }
            }
        }
    });
});

describe("npm run local: installs and layout", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "local-layout-"));
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it("runs the MLflow a tracking image's tag names: the pinned one, the previous supported one, none other", () => {
        const venv = path.join(tmp, "previous-venv");
        const tools = { ...TOOLS, mlflowPreviousVenv: venv };
        assert.equal(mlflowVenvFor(tools, `ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}-full`), TOOLS.mlflowVenv);
        assert.equal(mlflowVenvFor(tools, "registry.local:5000/mirror/mlflow@sha256:" + "a".repeat(64)), TOOLS.mlflowVenv, "a digest names no version");
        const previous = `ghcr.io/mlflow/mlflow:v${MLFLOW_PREVIOUS_VERSION}-full`;
        assert.throws(() => mlflowVenvFor(tools, previous), /venv is not installed \(scripts\/tools\/install-local.sh mlflow-previous\)/);
        fs.mkdirSync(path.join(venv, "bin"), { recursive: true });
        fs.writeFileSync(path.join(venv, "bin", "python"), "");
        assert.equal(mlflowVenvFor(tools, previous), venv);
        assert.throws(() => mlflowVenvFor(tools, "ghcr.io/mlflow/mlflow:v3.14.0-full"), new RegExp(`runs MLflow ${MLFLOW_VERSION} or ${MLFLOW_PREVIOUS_VERSION}, not 3\\.14\\.0`));
    });

    it("pins the MLflow, MLServer and KServe versions the components pin", () => {
        const req = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");
        assert.match(req("scripts/local/requirements/mlflow.txt"), new RegExp(`^mlflow==${MLFLOW_VERSION}$`, "m"));
        assert.match(req("scripts/local/requirements/mlflow-previous.txt"), new RegExp(`^mlflow==${MLFLOW_PREVIOUS_VERSION.replace(/\./g, "\\.")}$`, "m"));
        assert.ok(MLFLOW_PREVIOUS_VERSION.startsWith(`${MLFLOW_MIN_VERSION}.`), "the upgrade starts at the oldest supported minor");
        assert.match(req("images/mlserver/requirements.txt"), new RegExp(`^mlflow==${MLFLOW_VERSION}$`, "m"));
        assert.match(req("examples/requirements.txt"), new RegExp(`^mlflow==${MLFLOW_VERSION}$`, "m"));
        assert.match(req("images/mlserver/requirements.txt"), new RegExp(`^mlserver==${MLSERVER_VERSION}$`, "m"));
        assert.match(req("images/mlserver/requirements.txt"), new RegExp(`^mlserver-mlflow==${MLSERVER_VERSION}$`, "m"));
        assert.match(req("scripts/local/requirements/kserve-storage.txt"), new RegExp(`^kserve-storage==${KSERVE_VERSION.replace(/^v/, "")}$`, "m"));
    });

    it("reads the installer's --print-env output, and fails on a missing key", () => {
        const out = [
            "CACHE=/c", "BIN=/c/bin", "MINIO=/c/bin/minio", "MINIO_MODULE_VERSION=v0", "MC=/c/bin/mc", "MC_MODULE_VERSION=v1", "PG_BIN=/pg",
            "NGINX=/n", "PROMETHEUS=/p", "PROMTOOL=/pt", "CHROMIUM=", "MLFLOW_VENV=/v1", "MLFLOW_PREVIOUS_VENV=/v0", "MLSERVER_VENV=/v2", "KSERVE_STORAGE_VENV=/v3", "FAILED=",
        ].join("\n");
        const t = parseToolEnv(out);
        assert.equal(t.pgBin, "/pg");
        assert.equal(t.kserveStorageVenv, "/v3");
        assert.equal(t.mlflowPreviousVenv, "/v0");
        assert.throws(() => parseToolEnv("CACHE=/c"), /did not print BIN/);
    });

    it("keeps claims, recreates Secret files and emptyDirs at every start, and keeps ports stable", async () => {
        const layout = new Layout(tmp);
        const volumes = { data: { kind: "persistent" as const, claim: "data-db-0" }, s: { kind: "files" as const, files: { a: "1" }, mode: 0o440 }, scratch: { kind: "emptyDir" as const } };
        let dirs = layout.materialize("db-0", volumes);
        fs.writeFileSync(path.join(dirs.data, "keep"), "x");
        fs.writeFileSync(path.join(dirs.scratch, "drop"), "x");
        dirs = layout.materialize("db-0", volumes);
        assert.ok(fs.existsSync(path.join(dirs.data, "keep")));
        assert.ok(!fs.existsSync(path.join(dirs.scratch, "drop")));
        assert.equal(fs.statSync(path.join(dirs.s, "a")).mode & 0o777, 0o440);
        const first = await layout.ports(["a", "b"]);
        assert.notEqual(first.a, first.b);
        assert.deepEqual(await layout.ports(["a", "b"]), first);
    });

    it("runs a Job to completion with retries, restarts a crashed server, and stops a process group by PID", async function () {
        this.timeout(20_000);
        const sup = new Supervisor(path.join(tmp, "logs"), path.join(tmp, "pids"));
        const counter = path.join(tmp, "attempts");
        await sup.run("job", { argv: ["/bin/sh", "-c", `echo x >> ${counter}; [ $(wc -l < ${counter}) -ge 2 ]`], env: { PATH: "/usr/bin:/bin" }, cwd: tmp }, { retries: 2, retryDelayMs: 10 });
        assert.equal(fs.readFileSync(counter, "utf8").trim().split("\n").length, 2);
        await assert.rejects(sup.run("fails", { argv: ["/bin/false"], env: {}, cwd: tmp }, { retries: 1, retryDelayMs: 10 }), /failed \(1\) after 2 attempt/);

        const server = sup.start("server", { argv: ["/bin/sh", "-c", "sleep 60 & sleep 60"], env: { PATH: "/usr/bin:/bin" }, cwd: tmp }, { graceMs: 2000 });
        const firstPid = server.pid;
        process.kill(-firstPid, "SIGKILL");
        await server.exited();
        for (let i = 0; i < 40 && server.pid === firstPid; i++) await new Promise((r) => setTimeout(r, 100));
        assert.notEqual(server.pid, firstPid, "restartPolicy Always restarts it");
        assert.equal(server.restarts, 1);
        const pid = server.pid;
        await sup.stopAll();
        const groupAlive = () => {
            try {
                process.kill(-pid, 0);
                return true;
            } catch {
                return false;
            }
        };
        // Killed members may linger as zombies until init reaps them.
        for (let i = 0; i < 50 && groupAlive(); i++) await new Promise((r) => setTimeout(r, 100));
        assert.equal(groupAlive(), false, "the whole process group is gone");
        assert.ok(!fs.existsSync(path.join(tmp, "pids", "server.pid")));
    });
});

describe("npm run local: the ingress's rate limits in nginx", () => {
    it("mirrors limit-rps (with the burst multiplier) and limit-connections as ingress-nginx renders them, answering 429", () => {
        const ingress = ingressSchema.parse({ tls: { clusterIssuer: "letsencrypt-prod" }, rateLimit: { rps: 50, connections: 100 } });
        const annotations = ingressAnnotations({ ...ingress, proxyBodySize: "20g" }, "s");
        assert.deepEqual(httpDirectives(annotations), ["limit_req_zone $binary_remote_addr zone=ingress_rps:5m rate=50r/s;", "limit_conn_zone $binary_remote_addr zone=ingress_conn:5m;"]);
        const location = locationDirectives(annotations, "/h");
        for (const d of ["limit_req zone=ingress_rps burst=250 nodelay;", "limit_req_status 429;", "limit_conn ingress_conn 100;", "limit_conn_status 429;"]) assert.ok(location.includes(d), d);
        assert.equal(controllerValues(ingress).controller.config["limit-req-status-code"], "429");
        assert.throws(() => locationDirectives({ "nginx.ingress.kubernetes.io/limit-rps": "0" }, "/h"), /positive integer/);
        assert.throws(() => locationDirectives({ "nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8" }, "/h"), /not mirrored locally/);
    });
});
