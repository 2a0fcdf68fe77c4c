// (11) Where an off-cluster user sits: a client in a network namespace of its own, whose only route is a
// veth pair to this host, reaches the platform by its public host name on the edge alone (nginx, basic
// auth). From there, with the MLflow client's default settings, the README example runs, a 1 GiB
// artifact goes up and comes back byte for byte, the champion loads with mlflow.pyfunc, and the served
// model answers v2 inference through the edge. Every other server of the platform is out of its reach.
// Throughput through the edge and straight to the tracking server is written as a benchmark
// (test-artifacts/off-cluster-throughput.json), never asserted.
//
// Its own platform on its own data directory (.local/e2e-offcluster), the edge also listening on the
// veth's host-side address; skipped, saying why, where network namespaces cannot be made.
import assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ROOT } from "../../scripts/lib/program";
import { LocalPlatform } from "../../scripts/local/platform";
import { ensureLocalTools } from "../../scripts/local/tools";
import { ARTIFACTS, e2eDataRoot, listenAddresses, python, runPython, timed } from "./fixture";
import { NetNs, NetNsUnavailable } from "./netns";

const DIR = path.join(e2eDataRoot(), "e2e-offcluster");
const CLIENT = path.join(ROOT, "tests", "e2e", "clients", "off_cluster.py");
const BIG = 1024 ** 3;
const SMALL = 50 * 1000 * 1000;
const MB = 1e6;

describe("e2e (11): an off-cluster client, in a network namespace that reaches only the edge", function () {
    this.timeout(1_800_000);
    let ns: NetNs | undefined;
    let p: LocalPlatform | undefined;
    let host: string;
    let edge: string;
    let nsEnv: NodeJS.ProcessEnv;
    let example: { run_id: string; version: string; registered_model: string; alias: string; model_id: string };
    const scratch = path.join(DIR, "transfers");

    /** A Python script of the MLflow venv inside the namespace; its last stdout line as JSON. */
    async function inside(args: string[], timeoutMs = 900_000): Promise<any> {
        const r = await ns!.exec([python(p!), ...args], { env: nsEnv, cwd: ROOT, timeoutMs });
        assert.equal(r.code, 0, `${args.join(" ")} in ${ns!.name} ${r.timedOut ? "timed out" : `exited ${r.code ?? r.signal}`}:\n${r.stdout}\n${r.stderr}`);
        const lines = r.stdout.trim().split("\n");
        return JSON.parse(lines[lines.length - 1]);
    }

    /** The edge's access log (nginx's combined format): client address, user, method, path, status, body bytes sent. */
    function edgeLog(): { from: string; user: string; method: string; path: string; status: number; bytesSent: number }[] {
        const lines = fs.readFileSync(path.join(p!.nginx!.dir, "access.log"), "utf8").split("\n");
        return lines.flatMap((l) => {
            const m = l.match(/^(\S+) - (\S+) \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+)/);
            return m ? [{ from: m[1], user: m[2], method: m[3], path: m[4], status: Number(m[5]), bytesSent: Number(m[6]) }] : [];
        });
    }

    before(async function () {
        try {
            ns = await timed("off-cluster: namespace", () => NetNs.create());
        } catch (e) {
            if (!(e instanceof NetNsUnavailable)) throw e;
            console.log(`      SKIPPED (off-cluster spec): ${e.message}`);
            this.skip();
        }
        fs.rmSync(DIR, { recursive: true, force: true });
        const tools = await timed("off-cluster: install", () => ensureLocalTools());
        p = await timed("off-cluster: start", () =>
            LocalPlatform.start({ dir: DIR, tools, edgeAddresses: [ns!.hostAddress], log: (l) => console.log(`      [off-cluster] ${l}`) }),
        );
        const hosts = new Set(p.stack.find("Ingress").flatMap((i: any) => i.spec.rules.map((r: any) => r.host as string)));
        assert.equal(hosts.size, 1, `one public host: ${[...hosts]}`);
        host = [...hosts][0];
        ns.writeHosts({ [host]: ns.hostAddress });
        edge = `http://${host}:${p.ports.ingress}`;
        // A data scientist's shell: the public URL and the login, nothing else (no multipart settings).
        nsEnv = { PATH: process.env.PATH, HOME: process.env.HOME, MLFLOW_TRACKING_URI: edge, MLFLOW_TRACKING_USERNAME: p.login.user, MLFLOW_TRACKING_PASSWORD: p.login.password };
        fs.mkdirSync(scratch, { recursive: true });
    });

    after(async function () {
        this.timeout(300_000);
        const pids = fs.existsSync(path.join(DIR, "pids"))
            ? fs
                  .readdirSync(path.join(DIR, "pids"))
                  .map((f) => Number(fs.readFileSync(path.join(DIR, "pids", f), "utf8").trim()))
                  .filter((n) => Number.isInteger(n) && n > 1)
            : [];
        const errors: string[] = [];
        try {
            await p?.stop();
        } catch (e) {
            errors.push(`platform stop: ${(e as Error).message}`);
        }
        fs.rmSync(scratch, { recursive: true, force: true });
        const name = ns?.name;
        const hostIf = ns?.hostIf;
        try {
            await ns?.destroy();
        } catch (e) {
            errors.push((e as Error).message);
        }
        if (name && hostIf) {
            const left = await NetNs.present(name, hostIf);
            if (left.netns || left.link || left.etc) errors.push(`left behind: ${JSON.stringify(left)}`);
        }
        const alive = pids.filter((pid) => {
            try {
                process.kill(pid, 0);
                return true;
            } catch {
                return false;
            }
        });
        if (alive.length) errors.push(`processes of ${DIR} still running: ${alive.join(", ")}`);
        // The artifacts (over 2 GB in MinIO) are of no use once compared; a failed run keeps them to look at.
        const failed = this.test?.parent?.tests.some((t) => t.state === "failed") ?? true;
        if (p && !failed && !errors.length) fs.rmSync(DIR, { recursive: true, force: true });
        else if (p) console.log(`      [off-cluster] kept ${DIR} for inspection`);
        assert.deepEqual(errors, []);
    });

    it("reaches only the edge: every other server refuses the namespace, 127.0.0.1 is its own loopback, the edge asks for a login", async () => {
        const addrs = await ns!.exec(["ip", "-4", "-o", "addr", "show"]);
        const inet = [...addrs.stdout.matchAll(/\binet (\S+)/g)].map((m) => m[1]).sort();
        assert.deepEqual(inet, ["127.0.0.1/8", `${ns!.nsAddress}/30`].sort());
        const routes = (await ns!.exec(["ip", "-4", "route", "show"])).stdout.trim().split("\n");
        assert.equal(routes.length, 1, `only the veth's /30: ${routes}`);
        assert.doesNotMatch(routes[0], /default/);

        // Every port the platform listens on (Services' stand-ins, Prometheus, the Kubernetes control plane).
        const ports: Record<string, number> = { ...p!.ports, ...p!.cluster!.ports };
        const others = Object.entries(ports).filter(([k]) => k !== "ingress");
        for (const key of ["svc/mlflow-minio/9000", "svc/mlflow-tracking/5000", "svc/mlflow-postgres/5432"]) assert.ok(key in ports, `${key} among ${Object.keys(ports)}`);
        assert.equal(ports["svc/mlflow-postgres/5432"], Number(p!.database.PGPORT));
        const targets = [...others.map(([, port]) => `${ns!.hostAddress}:${port}`), ...Object.values(ports).map((port) => `127.0.0.1:${port}`)];
        const seen = await inside([CLIENT, "reach", `${ns!.hostAddress}:${p!.ports.ingress}`, `${host}:${p!.ports.ingress}`, ...targets]);
        assert.equal(seen[`${ns!.hostAddress}:${p!.ports.ingress}`], "connected");
        assert.equal(seen[`${host}:${p!.ports.ingress}`], "connected");
        for (const t of targets) assert.ok(["refused", "timeout"].includes(seen[t]), `${t} (${Object.entries(ports).find(([, v]) => t.endsWith(`:${v}`))?.[0]}): ${seen[t]}`);
        // As the host sees it: only the edge listens on the veth's address.
        assert.deepEqual(listenAddresses(p!.ports.ingress).sort(), ["127.0.0.1", ns!.hostAddress].sort());
        for (const [key, port] of others) assert.ok(!listenAddresses(port).includes(ns!.hostAddress), `${key} listens on ${ns!.hostAddress}`);

        const anonymous = await inside([CLIENT, "status", `${edge}/`]);
        assert.equal(anonymous.status, 401);
        assert.match(anonymous.www_authenticate ?? "", /^Basic /);
        assert.equal((await inside([CLIENT, "status", `${edge}/api/2.0/mlflow/experiments/search?max_results=1`])).status, 401);
    });

    it("is told by the edge to keep artifacts on it: multipart transfers reported off, presigned URLs and the webhook API refused", async () => {
        const info = await inside([CLIENT, "status", `${edge}/api/3.0/mlflow/server-info`, "--login"]);
        assert.equal(info.status, 200, JSON.stringify(info));
        assert.equal(info.json.multipart_uploads_enabled, false);
        assert.equal(info.json.multipart_downloads_enabled, false);
        for (const refused of ["/api/2.0/mlflow-artifacts/presigned/0/x.bin", "/api/2.0/mlflow/webhooks"]) {
            const r = await inside([CLIENT, "status", `${edge}${refused}`, "--login"]);
            assert.equal(r.status, 403, `${refused}: ${JSON.stringify(r)}`);
        }
    });

    it("lets the UI, opened at the public host, write (its origin is the edge's); another origin is refused", async () => {
        const create = (origin: string, name: string) => inside([CLIENT, "status", `${edge}/ajax-api/2.0/mlflow/experiments/create`, "--login", "--origin", origin, "--post", JSON.stringify({ name })]);
        const own = await create(new URL(edge).origin, "off-cluster-ui");
        assert.equal(own.status, 200, JSON.stringify(own));
        assert.match(own.json.experiment_id, /^\d+$/);
        const foreign = await create(`http://evil.example:${p!.ports.ingress}`, "off-cluster-foreign");
        assert.equal(foreign.status, 403, JSON.stringify(foreign));
    });

    it("runs the README example through the edge: a model logged, registered, and aliased champion", async () => {
        example = await timed("off-cluster: example", () => inside(["examples/train_wine.py"]));
        assert.equal(example.registered_model, "wine-quality");
        assert.equal(example.alias, "champion");
        assert.equal(example.version, "1");
    });

    it("moves a 1 GiB artifact up and back through the edge byte for byte (and a 50 MB one), with default client settings; throughput against the direct path written as a benchmark", async () => {
        const big = path.join(scratch, "random-1GiB.bin");
        const small = path.join(scratch, "random-50MB.bin");
        const made = await runPython(p!, [CLIENT, "generate", big, String(BIG)], { PATH: process.env.PATH });
        assert.equal(made.bytes, BIG);
        const smallMade = await runPython(p!, [CLIENT, "generate", small, String(SMALL)], { PATH: process.env.PATH });

        const viaEdge = await timed("off-cluster: 1 GiB through the edge", () => inside([CLIENT, "transfer", big, scratch]));
        assert.equal(viaEdge.tracking_uri, edge);
        assert.equal(viaEdge.proxy_multipart_upload, false);
        assert.equal(viaEdge.proxy_multipart_download, false);
        assert.deepEqual(viaEdge.multipart_env, []);
        assert.match(viaEdge.artifact_uri, /^mlflow-artifacts:\//, "artifacts proxied by the tracking server");
        assert.equal(viaEdge.listed_bytes, BIG);
        assert.equal(viaEdge.downloaded_bytes, BIG);
        assert.equal(viaEdge.downloaded_sha256, made.sha256);
        // The edge's access log: both transfers came from the namespace's address, whole.
        const transfers = edgeLog().filter((l) => l.from === ns!.nsAddress && l.path.includes(`/${viaEdge.run_id}/artifacts/random-1GiB.bin`));
        assert.deepEqual(
            transfers.map((l) => [l.method, l.status]),
            [["PUT", 200], ["GET", 200]],
            JSON.stringify(transfers),
        );
        assert.ok(transfers.every((l) => l.user === p!.login.user));
        // What nginx sent: the file in chunked transfer encoding (the server streams it), so a little over its size.
        assert.ok(transfers[1].bytesSent >= BIG && transfers[1].bytesSent < BIG * 1.01, `sent ${transfers[1].bytesSent}`);

        const smallViaEdge = await inside([CLIENT, "transfer", small, scratch]);
        fs.rmSync(small, { force: true });
        assert.equal(smallViaEdge.downloaded_bytes, SMALL);
        assert.equal(smallViaEdge.downloaded_sha256, smallMade.sha256);

        // The same file from the host straight to the tracking server's port: no edge, no namespace.
        const tracking = p!.servicePort("mlflow-tracking", 5000);
        const direct = await timed("off-cluster: 1 GiB direct", () =>
            runPython(p!, [CLIENT, "transfer", big, scratch], { PATH: process.env.PATH, HOME: process.env.HOME, MLFLOW_TRACKING_URI: `http://127.0.0.1:${tracking}` }),
        );
        fs.rmSync(big, { force: true });
        assert.equal(direct.downloaded_sha256, made.sha256);
        assert.ok(!edgeLog().some((l) => l.path.includes(direct.run_id)), "the direct transfer bypassed the edge");

        const rate = (bytes: number, s: number) => Math.round((bytes / MB / s) * 10) / 10;
        const leg = (r: any, bytes: number) => ({
            upload_seconds: Math.round(r.upload_seconds * 100) / 100,
            download_seconds: Math.round(r.download_seconds * 100) / 100,
            upload_MBps: rate(bytes, r.upload_seconds),
            download_MBps: rate(bytes, r.download_seconds),
        });
        const edgeLeg = leg(viaEdge, BIG);
        const directLeg = leg(direct, BIG);
        const result = {
            unit: "MB/s = 10^6 bytes per second; each transfer one mlflow.log_artifact or mlflow.artifacts.download_artifacts call, default client settings",
            bytes: BIG,
            sha256: made.sha256,
            edge_from_namespace: { path: `network namespace → veth → edge (nginx, basic auth) at ${edge} → tracking server → MinIO`, ...edgeLeg },
            direct_from_host: { path: `host loopback → tracking server at http://127.0.0.1:${tracking} → MinIO`, ...directLeg },
            edge_over_direct: {
                upload: Math.round((edgeLeg.upload_MBps / directLeg.upload_MBps) * 100) / 100,
                download: Math.round((edgeLeg.download_MBps / directLeg.download_MBps) * 100) / 100,
            },
            small_edge_from_namespace: { bytes: SMALL, ...leg(smallViaEdge, SMALL) },
            machine: { cpus: os.cpus().length, memory_GiB: Math.round(os.totalmem() / 1024 ** 3), generate_1GiB_seconds: Math.round(made.seconds * 100) / 100 },
            measured_at: new Date().toISOString(),
        };
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        fs.writeFileSync(path.join(ARTIFACTS, "off-cluster-throughput.json"), JSON.stringify(result, null, 2) + "\n");
        console.log(`      [off-cluster] throughput (MB/s): edge ↑${edgeLeg.upload_MBps} ↓${edgeLeg.download_MBps}, direct ↑${directLeg.upload_MBps} ↓${directLeg.download_MBps}`);
    });

    it("loads models:/wine-quality@champion with mlflow.pyfunc and predicts on wine rows", async () => {
        const r = await inside([CLIENT, "predict", "models:/wine-quality@champion", "8"]);
        assert.equal(r.run_id, example.run_id);
        assert.equal(r.predictions.length, 8);
        const correct = r.predictions.filter((x: number, i: number) => x === r.labels[i]).length;
        assert.ok(correct >= 7, `${correct}/8 predictions match the labels`);
    });

    it("answers v2 inference through the edge at /v2/models/wine-quality, behind the login; the model server itself is out of reach", async () => {
        const served = await timed("off-cluster: serving", () => p!.serving!.waitForModel("wine-quality", 600_000, example.version));
        const r = await inside([CLIENT, "infer", `${edge}/v2/models/wine-quality/infer`, "8"]);
        assert.equal(r.status_without_credentials, 401);
        assert.equal(r.status, 200, JSON.stringify(r.answer));
        assert.equal(r.answer.model_name, "wine-quality");
        const [out] = r.answer.outputs;
        assert.equal(out.shape[0], 8);
        assert.equal(out.data.length, 8);
        const correct = out.data.filter((x: number, i: number) => x === r.labels[i]).length;
        assert.ok(correct >= 7, `${correct}/8 predictions match the labels`);
        const calls = edgeLog().filter((l) => l.from === ns!.nsAddress && l.path === "/v2/models/wine-quality/infer");
        assert.deepEqual(calls.map((l) => [l.method, l.user, l.status]), [["POST", "-", 401], ["POST", p!.login.user, 200]]);
        const modelPorts = Object.values(served.ports).map((port) => `${ns!.hostAddress}:${port}`);
        const seen = await inside([CLIENT, "reach", ...modelPorts]);
        for (const t of modelPorts) assert.ok(["refused", "timeout"].includes(seen[t]), `model server ${t}: ${seen[t]}`);
    });
});
