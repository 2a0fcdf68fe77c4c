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

    // One stack file per mistake, as a new user writes them; each is refused naming the file, by the
    // render CLI's exit code and message, without a stack trace.
    const badFiles: [string, string, RegExp][] = [
        ["a list", "- mlflow-platform:namespace: x\n", /Pulumi\.bad\.yaml: a stack file is a mapping with a `config:` mapping at the top level, not a list/],
        ["prose", "This stack is for the team's dev work.\n", /Pulumi\.bad\.yaml: a stack file is a mapping .*not a string/],
        ["a misspelt config:", "confg:\n  mlflow-platform:namespace: x\n", /Pulumi\.bad\.yaml: unknown top-level key `confg` \(did you mean `config`\?\)/],
        ["config: as a list", "config:\n  - mlflow-platform:namespace: x\n", /Pulumi\.bad\.yaml: `config:` must be a mapping .*not a list/],
        ["a YAML syntax error", "config:\n  mlflow-platform:development: true\n  mlflow-platform:tracking: {replicas: 2\n", /Pulumi\.bad\.yaml:\d+:\d+: not valid YAML: /],
        ["an unknown key", "config:\n  mlflow-platform:development: true\n  mlflow-platform:nmespace: x\n", /mlflow-platform:nmespace is not a known key \(did you mean `namespace`\?\)/],
        ["a plaintext password", "config:\n  mlflow-platform:development: true\n  mlflow-platform:databasePassword: hunter2\n", /mlflow-platform:databasePassword is set in plaintext: .*pulumi config set --secret databasePassword/],
    ];
    for (const [what, text, expected] of badFiles) {
        it(`refuses a stack file with ${what}, naming it, exit 1, no stack trace`, () => {
            const dir = fs.mkdtempSync(path.join(tmp, "bad-"));
            fs.writeFileSync(path.join(dir, "Pulumi.bad.yaml"), text);
            const r = render("--stack", "bad", "--stack-dir", dir, "--out", path.join(dir, "out"));
            assert.equal(r.code, 1, r.stderr);
            assert.match(r.stderr, expected);
            assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+\)?\n/, "no stack trace");
            assert.ok(!r.stderr.includes("hunter2"), "a secret value is never printed");
            assert.equal(fs.existsSync(path.join(dir, "out")), false, "nothing is written");
        });
    }

    it("reads an empty stack file as setting nothing: only the TLS rule of a non-development stack remains", () => {
        const dir = fs.mkdtempSync(path.join(tmp, "empty-"));
        fs.writeFileSync(path.join(dir, "Pulumi.empty.yaml"), "");
        const r = render("--stack", "empty", "--stack-dir", dir, "--out", path.join(dir, "out"));
        assert.equal(r.code, 1);
        const problems = r.stderr.split("\n").filter((l) => l.startsWith("  - "));
        assert.equal(problems.length, 1, r.stderr);
        assert.match(problems[0], /mlflow-platform:ingress\.tls is missing/);
        fs.writeFileSync(path.join(dir, "Pulumi.empty.yaml"), "config:\n  mlflow-platform:development: true\n");
        assert.equal(render("--stack", "empty", "--stack-dir", dir, "--out", path.join(dir, "out")).code, 0);
    });

    it("explains its usage without --stack", () => {
        const r = render();
        assert.equal(r.code, 2);
        assert.match(r.stderr, /usage: npm run render -- --stack/);
    });
});
