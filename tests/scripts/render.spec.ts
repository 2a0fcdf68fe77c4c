import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse } from "yaml";
import { REDACTED } from "../../scripts/lib/manifests";


import { ROOT } from "../harness";
/** Runs `npm run render` the way a user does (as a separate process) and returns its result. */
function render(...args: string[]) {
    const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/render.ts", ...args], { cwd: ROOT, encoding: "utf8" });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("npm run render", function () {
    this.timeout(60000);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "render-spec-"));
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it("writes one <kind>-<name>.yaml per object with secret values redacted", () => {
        const out = path.join(tmp, "dev");
        const r = render("--stack", "dev", "--out", out, "--seed", "s1");
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /rendered \d+ objects of stack dev .*secret values redacted/);
        const files = fs.readdirSync(out).sort();
        assert.ok(files.includes("deployment-mlflow-server.yaml"), files.join(" "));
        assert.ok(files.includes("statefulset-mlflow-postgres.yaml"));
        for (const f of files) {
            const o = parse(fs.readFileSync(path.join(out, f), "utf8"));
            assert.equal(f, `${o.kind.toLowerCase()}-${o.metadata.name}.yaml`);
        }
        const secret = parse(fs.readFileSync(path.join(out, "secret-mlflow-database.yaml"), "utf8"));
        assert.deepEqual(secret.stringData, { password: REDACTED, username: REDACTED });
    });

    it("shows secret values only with --show-secrets, the same for the same seed", () => {
        const a = path.join(tmp, "a");
        const b = path.join(tmp, "b");
        assert.equal(render("--stack", "dev", "--out", a, "--seed", "s2", "--show-secrets").code, 0);
        assert.equal(render("--stack", "dev", "--out", b, "--seed", "s2", "--show-secrets").code, 0);
        const pw = (dir: string) => parse(fs.readFileSync(path.join(dir, "secret-mlflow-database.yaml"), "utf8")).stringData.password;
        assert.equal(pw(a).length, 32);
        assert.notEqual(pw(a), REDACTED);
        assert.equal(pw(a), pw(b));
    });

    it("fails with the config error, and writes nothing, when the stack config is invalid", () => {
        const dir = path.join(tmp, "bad");
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, "Pulumi.broken.yaml"), "config:\n  mlflow-platform:tracking:\n    replicas: -2\n");
        const out = path.join(tmp, "bad-out");
        const r = render("--stack", "broken", "--stack-dir", dir, "--out", out);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /mlflow-platform:tracking\.replicas = -2 is invalid: must be at least 1/);
        assert.equal(fs.existsSync(out), false);
    });

    it("explains its usage without --stack", () => {
        const r = render();
        assert.equal(r.code, 2);
        assert.match(r.stderr, /usage: npm run render -- --stack/);
    });
});
