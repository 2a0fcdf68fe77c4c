import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as http from "http";
import type { AddressInfo } from "net";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import {
    BUILD_SCRIPT,
    defaultImageName,
    imageReference,
    imageTag,
    ModelImage,
    ModelImageArgs,
    MLSERVER_DOCKERFILE_LAYER,
    parsePushDigest,
} from "../../components/modelImage";
import { MLSERVER_VERSION } from "../../components/images";
import { FIXTURES, installMocks, isSecretValue, only, out, resetRegistry, settle, unsecret } from "../harness";

const COMMAND = "command:local:Command";
const DIGEST = "sha256:" + "0123456789abcdef".repeat(4);
const PASSWORD = "tr@cking/pass word";

// A fake MLflow on 127.0.0.1 that answers every alias lookup with version 3 (the recorded MLflow 3.17.2
// response, renumbered), and records what it was asked.
const seen: string[] = [];
let registryUrl = "";
const aliasResponse = JSON.parse(fs.readFileSync(path.join(FIXTURES, "serving", "alias-models-source.json"), "utf8"));
const registry = http.createServer((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization ?? ""}`);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ model_version: { ...aliasResponse.model_version, version: "3" } }));
});

const baseArgs = (overrides: Partial<ModelImageArgs> = {}): ModelImageArgs => ({
    registeredModel: "wine-quality",
    alias: "champion",
    trackingUri: registryUrl,
    username: "builder",
    password: pulumi.secret(PASSWORD),
    registry: "registry.example.com/ml",
    ...overrides,
});

async function build(name: string, overrides: Partial<ModelImageArgs> = {}) {
    const image = new ModelImage(name, baseArgs(overrides));
    await settle(image.build);
    const inputs = only(COMMAND, `${name}-build`).inputs;
    return { image, inputs, env: unsecret(inputs.environment) as Record<string, any> };
}

describe("ModelImage", () => {
    before(async () => {
        await installMocks();
        await new Promise<void>((r) => registry.listen(0, "127.0.0.1", r));
        registryUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}`;
    });
    after(() => new Promise<void>((r) => registry.close(() => r())));
    beforeEach(() => {
        resetRegistry();
        seen.length = 0;
    });

    describe("the local command", () => {
        it("builds the alias's version models:/<name>/<version> into <registry>/<model>:<version> and pushes it, re-run only by the version", async () => {
            const { image, inputs, env } = await build("mi-cmd");
            assert.equal(inputs.create, BUILD_SCRIPT);
            assert.equal(inputs.update, BUILD_SCRIPT, "the update path re-runs the same idempotent script");
            assert.deepEqual(inputs.triggers, ["3"]);
            assert.equal(unsecret(env.MODEL_URI), "models:/wine-quality/3");
            assert.equal(unsecret(env.IMAGE), "registry.example.com/ml/wine-quality:3");
            assert.equal(unsecret(env.MLSERVER_VERSION), MLSERVER_VERSION);
            assert.equal(unsecret(env.MLFLOW_TRACKING_URI), registryUrl);
            assert.equal(await out(image.taggedImage), "registry.example.com/ml/wine-quality:3");
            assert.equal(await out(image.version), "3");
            // The mocked command prints nothing, so there is no digest: the tag is the reference.
            assert.equal(await out(image.imageRef), "registry.example.com/ml/wine-quality:3");
            assert.equal(await pulumi.isSecret(image.imageRef), false);
        });

        it("passes the tracking credentials only as secret environment, never in the command", async () => {
            const { inputs, env } = await build("mi-secret");
            assert.ok(isSecretValue(inputs.environment), "the environment, with MLFLOW_TRACKING_USERNAME/PASSWORD, must reach the provider as a secret");
            assert.equal(unsecret(env.MLFLOW_TRACKING_USERNAME), "builder");
            assert.equal(unsecret(env.MLFLOW_TRACKING_PASSWORD), PASSWORD);
            for (const field of ["create", "update", "triggers"]) assert.ok(!JSON.stringify(inputs[field]).includes(PASSWORD), `${field} must not contain the password`);
            assert.doesNotMatch(BUILD_SCRIPT, /MLFLOW_TRACKING_(PASSWORD|USERNAME)/, "the mlflow CLI reads them from the environment itself");
        });

        it("names the image after the model, under any registry path", async () => {
            const { env } = await build("mi-name", { registeredModel: "Wine Quality (EU)", registry: "localhost:5000/team/" });
            assert.equal(unsecret(env.IMAGE), "localhost:5000/team/wine-quality-eu:3");
            assert.equal(unsecret(env.MODEL_URI), "models:/Wine Quality (EU)/3");
        });

        it("resolves the version through the registry with the credentials, and the version is not a secret", async () => {
            const { image } = await build("mi-alias", { alias: "prod" });
            assert.equal(await out(image.version), "3");
            assert.equal(await pulumi.isSecret(image.version), false, "a version number is not a secret");
            assert.equal(seen.length, 1);
            assert.match(seen[0], /^\/api\/2\.0\/mlflow\/registered-models\/alias\?name=wine-quality&alias=prod Basic /);
        });

        it("fails with the model and alias named when the registry cannot be reached", async () => {
            const image = new ModelImage("mi-down", baseArgs({ trackingUri: "http://127.0.0.1:9" }));
            // An Output that failed never calls apply; its promise carries the error.
            await assert.rejects((image.version as any).promise(), /ModelImage mi-down: cannot resolve wine-quality@champion .*unreachable/);
        });
    });

    describe("digest parsing", () => {
        const push = (tag: string, digest: string) =>
            `The push refers to repository [registry.example.com/ml/wine-quality]\n5f70bf18a086: Pushed\n${tag}: digest: ${digest} size: 2417\n`;
        const table: [string, string, string | undefined][] = [
            ["docker push output", push("3", DIGEST), DIGEST],
            ["the last digest when several", push("3", "sha256:" + "a".repeat(64)) + push("3", DIGEST), DIGEST],
            ["no digest", "Error response from daemon: unauthorized\n", undefined],
            ["a short digest", push("3", "sha256:abc123"), undefined],
            ["upper-case hex", push("3", "sha256:" + "A".repeat(64)), undefined],
            ["empty output", "", undefined],
        ];
        for (const [what, stdout, want] of table) {
            it(`parses ${what}`, () => assert.equal(parsePushDigest(stdout), want));
        }

        it("references the image by digest when the push reported one", () => {
            assert.equal(imageReference("registry.example.com/ml/wine:3", push("3", DIGEST)), `registry.example.com/ml/wine@${DIGEST}`);
            assert.equal(imageReference("localhost:5000/wine:3", push("3", DIGEST)), `localhost:5000/wine@${DIGEST}`);
            assert.equal(imageReference("localhost:5000/wine:3", ""), "localhost:5000/wine:3");
        });

        it("derives tags and names", () => {
            assert.equal(imageTag("17"), "17");
            assert.throws(() => imageTag("latest"), /not a registry version number/);
            assert.throws(() => imageTag("0"), /not a registry version number/);
            assert.equal(defaultImageName("Wine Quality v2"), "wine-quality-v2");
            assert.equal(defaultImageName("__"), "model");
        });
    });

    describe("the build script, run against stand-in mlflow and docker executables", () => {
        let dir: string;
        const logFile = () => path.join(dir, "calls.log");
        const run = (extraEnv: Record<string, string> = {}, image = "registry.example.com/ml/wine-quality:3") =>
            spawnSync("/bin/sh", ["-c", BUILD_SCRIPT], {
                encoding: "utf8",
                env: {
                    PATH: `${path.join(dir, "bin")}:/usr/bin:/bin`,
                    TMPDIR: dir,
                    LOG: logFile(),
                    MODEL_URI: "models:/wine-quality/3",
                    IMAGE: image,
                    MLSERVER_VERSION: "1.7.1",
                    MLFLOW_TRACKING_URI: "https://mlflow.example.com",
                    MLFLOW_TRACKING_USERNAME: "builder",
                    MLFLOW_TRACKING_PASSWORD: PASSWORD,
                    ...extraEnv,
                },
            });
        const calls = () => (fs.existsSync(logFile()) ? fs.readFileSync(logFile(), "utf8").trim().split("\n") : []);

        beforeEach(() => {
            dir = fs.mkdtempSync(path.join(os.tmpdir(), "model-image-"));
            fs.mkdirSync(path.join(dir, "bin"));
            // `mlflow models generate-dockerfile`: writes a Dockerfile the way MLflow 3.17 does and records
            // its argv and whether the credentials arrived through the environment.
            fs.writeFileSync(
                path.join(dir, "bin", "mlflow"),
                `#!/bin/sh
echo "mlflow $*" >> "$LOG"
echo "mlflow-env uri=$MLFLOW_TRACKING_URI user=$MLFLOW_TRACKING_USERNAME password-set=\${MLFLOW_TRACKING_PASSWORD:+yes}" >> "$LOG"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--output-directory" ] && out="$a"; prev="$a"; done
mkdir -p "$out/model_dir"
printf 'FROM python:3.11.7-slim\\nCOPY model_dir /opt/ml/model\\nENTRYPOINT ["python", "-c", "from mlflow.models import container as C; C._serve(\\x27local\\x27)"]\\n' > "$out/Dockerfile"
echo "generated Dockerfile in $out"
`,
                { mode: 0o755 },
            );
            fs.writeFileSync(
                path.join(dir, "bin", "docker"),
                `#!/bin/sh
echo "docker $*" >> "$LOG"
case "$1" in
  build) for a in "$@"; do ctx="$a"; done; cp "$ctx/Dockerfile" "$(dirname "$LOG")/built.Dockerfile"; echo "Successfully built" ;;
  push) [ -n "$FAIL_PUSH" ] && { echo "denied: requested access to the resource is denied" >&2; exit 1; }
        echo "The push refers to repository [\${2%:*}]"; echo "\${2##*:}: digest: ${DIGEST} size: 2417" ;;
esac
`,
                { mode: 0o755 },
            );
        });
        afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

        it("generates the Dockerfile with the platform's mlflow, adds MLServer, builds, pushes and reports the digest", () => {
            const r = run();
            assert.equal(r.status, 0, r.stderr);
            const log = calls();
            assert.equal(log.length, 4, log.join("\n"));
            // The build context is a fresh `mktemp -d` under TMPDIR, generated into and then built.
            const escapedDir = dir.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
            const generate = new RegExp(`^mlflow models generate-dockerfile --model-uri models:/wine-quality/3 --output-directory (${escapedDir}/tmp\\.\\w+) --env-manager local$`);
            const ctx = log[0].match(generate)?.[1];
            assert.ok(ctx, log[0]);
            assert.equal(log[1], "mlflow-env uri=https://mlflow.example.com user=builder password-set=yes");
            assert.equal(log[2], `docker build --build-arg MLSERVER_VERSION=1.7.1 --tag registry.example.com/ml/wine-quality:3 ${ctx}`);
            assert.equal(log[3], "docker push registry.example.com/ml/wine-quality:3");
            assert.ok(!calls().some((c) => c.includes(PASSWORD)), "the password is never an argument");
            assert.equal(parsePushDigest(r.stdout), DIGEST);
            assert.match(r.stdout, /pushed: registry\.example\.com\/ml\/wine-quality:3\n$/);
            assert.equal(imageReference("registry.example.com/ml/wine-quality:3", r.stdout), `registry.example.com/ml/wine-quality@${DIGEST}`);
            assert.doesNotMatch(r.stdout, /generated Dockerfile|Successfully built/, "tool chatter goes to stderr");

            const dockerfile = fs.readFileSync(path.join(dir, "built.Dockerfile"), "utf8");
            assert.ok(dockerfile.startsWith("FROM python:3.11.7-slim\n"), "MLflow's generated part comes first");
            assert.ok(dockerfile.endsWith(MLSERVER_DOCKERFILE_LAYER), "the MLServer layer is appended verbatim");
            assert.match(dockerfile, /^ARG MLSERVER_VERSION$/m);
            assert.match(dockerfile, /pip install --no-cache-dir "mlserver==\$\{MLSERVER_VERSION\}" "mlserver-mlflow==\$\{MLSERVER_VERSION\}" "uvloop<0\.22"/);
            assert.match(dockerfile, /^USER 10001:10001$/m);
            const entrypoints = dockerfile.match(/^ENTRYPOINT .*$/gm)!;
            assert.equal(entrypoints[entrypoints.length - 1], 'ENTRYPOINT ["mlserver", "start", "/opt/ml/model"]', "the last ENTRYPOINT wins");
            assert.equal(fs.readdirSync(dir).filter((f) => f.startsWith("tmp.")).length, 0, "the build context is removed");
        });

        it("does not rebuild when the previous run already pushed this image (credentials changed, same version)", () => {
            const first = run();
            fs.rmSync(logFile());
            const again = run({ PULUMI_COMMAND_STDOUT: first.stdout.replace(/\n$/, ""), MLFLOW_TRACKING_PASSWORD: "rotated" });
            assert.equal(again.status, 0, again.stderr);
            assert.deepEqual(calls(), [], "neither mlflow nor docker runs");
            assert.equal(parsePushDigest(again.stdout), DIGEST, "the recorded digest is kept");
        });

        it("rebuilds for a new version", () => {
            const first = run({}, "registry.example.com/ml/wine-quality:2");
            fs.rmSync(logFile());
            const next = run({ PULUMI_COMMAND_STDOUT: first.stdout, MODEL_URI: "models:/wine-quality/3" });
            assert.equal(next.status, 0, next.stderr);
            assert.ok(calls().includes("docker push registry.example.com/ml/wine-quality:3"));
            assert.match(next.stdout, /pushed: registry\.example\.com\/ml\/wine-quality:3\n$/);
        });

        it("fails, without claiming a push, when the push fails", () => {
            const r = run({ FAIL_PUSH: "1" });
            assert.notEqual(r.status, 0);
            assert.doesNotMatch(r.stdout, /pushed:/);
            assert.match(r.stderr, /denied/);
        });
    });
});
