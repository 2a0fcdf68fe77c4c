// scripts/tools/install-kubernetes.sh without a real build: a throwaway cache (MLFLOW_PLATFORM_CACHE)
// and a stand-in `go` first on PATH that records each call and fails. What the installer must do with
// its arguments and its stamps, and that --background returns at once.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { readKubernetesEnv } from "../../scripts/lib/kubernetesVersion";
import { parseKubernetesToolEnv } from "../../scripts/cluster/controlPlane";
import { ROOT } from "../harness";

const INSTALLER = path.join(ROOT, "scripts", "tools", "install-kubernetes.sh");
const BINARIES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"];
const pins = readKubernetesEnv();

describe("install-kubernetes.sh (no build: a stand-in go)", function () {
    this.timeout(30_000);
    let tmp: string;
    let goCalls: string;
    let env: NodeJS.ProcessEnv;
    const versionDir = () => path.join(tmp, "cache", "kubernetes", pins.kubernetes);
    const run = (args: string[]) => spawnSync(INSTALLER, args, { env, encoding: "utf8" });
    const calls = () => (fs.existsSync(goCalls) ? fs.readFileSync(goCalls, "utf8").trim().split("\n").filter(Boolean) : []);
    /** Stamps and executables as a finished build leaves them, the stamp of `stale` naming another version. */
    const built = (stale?: string) => {
        for (const b of BINARIES) {
            fs.mkdirSync(path.join(versionDir(), "bin"), { recursive: true });
            fs.mkdirSync(path.join(versionDir(), "stamps"), { recursive: true });
            fs.writeFileSync(path.join(versionDir(), "bin", b), "#!/bin/sh\n", { mode: 0o755 });
            const v = b === "etcd" ? pins.etcd : pins.kubernetes;
            fs.writeFileSync(path.join(versionDir(), "stamps", b), `${b === stale ? "v0.0.1" : v}\n`);
        }
    };

    beforeEach(() => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "install-kubernetes-"));
        const fakeBin = path.join(tmp, "fakebin");
        fs.mkdirSync(fakeBin);
        goCalls = path.join(tmp, "go-calls");
        fs.writeFileSync(path.join(fakeBin, "go"), `#!/bin/sh\necho "$*" >>"${goCalls}"\necho "go: stand-in refuses" >&2\nexit 1\n`, { mode: 0o755 });
        env = { ...process.env, MLFLOW_PLATFORM_CACHE: path.join(tmp, "cache"), PATH: `${fakeBin}:/usr/bin:/bin` };
    });
    afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it("builds nothing when every stamp names the pinned version, and prints where the binaries are", () => {
        built();
        const r = run(["--print-env"]);
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(calls(), [], "go was called although everything was built");
        const tools = parseKubernetesToolEnv(r.stdout);
        assert.equal(tools.version, pins.kubernetes);
        assert.equal(tools.etcdVersion, pins.etcd);
        assert.equal(tools.kubeApiserver, path.join(versionDir(), "bin", "kube-apiserver"));
        assert.equal(tools.etcd, path.join(versionDir(), "bin", "etcd"));
    });

    it("rebuilds a binary whose stamp names another version, and only that one; a failed build exits 1 naming it", () => {
        built("kube-scheduler");
        const r = run([]);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /cannot install kube-scheduler: .*k8s\.io\/kubernetes@v1\.\d+\.\d+/);
        assert.doesNotMatch(r.stderr, /cannot install (etcd|kube-apiserver|kubectl)/);
        assert.ok(calls().some((c) => c.startsWith(`mod download -json k8s.io/kubernetes@${pins.kubernetes}`)), calls().join("\n"));
    });

    it("builds only the binaries named on the command line", () => {
        const r = run(["etcd"]);
        assert.equal(r.status, 1);
        assert.match(r.stderr, /cannot install etcd: /);
        assert.doesNotMatch(r.stderr, /kube-apiserver/);
    });

    it("refuses an unknown argument with exit 2, listing what it takes", () => {
        const r = run(["kubelet"]);
        assert.equal(r.status, 2);
        assert.match(r.stderr, /unknown binary 'kubelet' \(one of: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl/);
    });

    it("--background returns at once and leaves the build (here: failing) to a detached run that logs", async () => {
        const t = Date.now();
        const r = run(["--background"]);
        assert.equal(r.status, 0, r.stderr);
        assert.ok(Date.now() - t < 5000, `took ${Date.now() - t} ms`);
        assert.match(r.stderr, /building etcd kube-apiserver kube-controller-manager kube-scheduler kubectl in the background \(pid \d+, log .*install\.log\)/);
        const log = path.join(versionDir(), "install.log");
        for (let i = 0; i < 100 && !/cannot install kubectl/.test(fs.existsSync(log) ? fs.readFileSync(log, "utf8") : ""); i++) await new Promise((res) => setTimeout(res, 100));
        assert.match(fs.readFileSync(log, "utf8"), /cannot install kubectl: /);
    });

    it("--background with everything built starts nothing", () => {
        built();
        const r = run(["--background"]);
        assert.equal(r.status, 0);
        assert.match(r.stderr, /is built \(nothing to do\)/);
        assert.equal(fs.existsSync(path.join(versionDir(), "install.log")), false);
    });
});
