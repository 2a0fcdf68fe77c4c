// The installers take a lock per cache folder: a test run and `npm run local` started together must not
// install into the same folder at once. Each installer, started while another process holds its lock,
// waits (and says so), then finishes.
import assert from "assert/strict";
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ROOT } from "../harness";

const CACHE = process.env.MLFLOW_PLATFORM_CACHE ?? path.join(os.homedir(), ".cache", "mlflow-platform");

function run(argv: string[]): Promise<{ code: number | null; stderr: string; ms: number }> {
    const t = Date.now();
    return new Promise((resolve) => {
        const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr!.on("data", (d) => (stderr += d));
        child.on("exit", (code) => resolve({ code, stderr, ms: Date.now() - t }));
    });
}

describe("the installers' lock", function () {
    this.timeout(900_000); // a cold machine installs the part first
    for (const [script, folder, part] of [
        ["install-local.sh", "local", "kserve-storage"],
        ["install-checkers.sh", "checkers", "prometheus-crds"],
    ]) {
        it(`${script} waits while another process holds ${folder}/.install.lock, then installs`, async () => {
            const installer = path.join(ROOT, "scripts", "tools", script);
            // Installed once first, so the timed run below is only the wait.
            assert.equal((await run([installer, part])).code, 0);
            const lock = path.join(CACHE, folder, ".install.lock");
            fs.mkdirSync(path.dirname(lock), { recursive: true });
            const holder = spawn("flock", [lock, "sleep", "3"], { stdio: "ignore" });
            try {
                await new Promise((r) => setTimeout(r, 300));
                const r = await run([installer, part]);
                assert.equal(r.code, 0, r.stderr);
                assert.match(r.stderr, new RegExp(`another install into .*${folder} is running; waiting for it`));
                assert.ok(r.ms >= 2000, `it went ahead after ${r.ms} ms`);
            } finally {
                if (holder.exitCode === null) process.kill(holder.pid!, "SIGTERM");
            }
        });
    }
});
