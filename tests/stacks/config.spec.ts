// The config contract, as a user meets it: every key of a stack file is known or refused by name (with
// the nearest known one), every bad value is refused by key with what is allowed, before any resource
// exists, and a rule between keys names the one the stack file set.
import assert from "assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { nginxSize, nginxSizeValue } from "../../components/authIngress/schema";
import { parseImage, quantityValue } from "../../components/fields";
import { DEFAULT_IMAGES } from "../../components/images";
import { ConfigError, loadConfig, PROJECT } from "../../stacks/config";
import { installMocks, setStackConfig } from "../harness";

/** A development stack: the TLS rule stays out of the way unless a case is about it. */
const DEV = { development: true };

function load(values: Record<string, unknown>, secretKeys: string[] = []) {
    setStackConfig(values, secretKeys);
    return loadConfig(new pulumi.Config(PROJECT));
}
/** The problems loading reports, one per line. */
function problemsOf(values: Record<string, unknown>, secretKeys: string[] = []): string[] {
    try {
        load(values, secretKeys);
    } catch (e) {
        assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
        return e.problems;
    }
    assert.fail("expected loadConfig to reject the configuration");
}

describe("stack configuration", () => {
    before(() => installMocks());

    describe("defaults", () => {
        it("fills every default when a development stack sets nothing else", () => {
            const cfg = load(DEV);
            assert.equal(cfg.namespace, "mlflow");
            assert.equal(cfg.retainOnDestroy, true, "stateful resources outlive `pulumi destroy` unless the stack opts out");
            assert.equal(cfg.database.mode, "in-cluster");
            assert.equal(cfg.database.image, DEFAULT_IMAGES.postgres);
            assert.equal(cfg.objectStore.mode, "minio");
            assert.equal(cfg.objectStore.bucket, "mlflow");
            assert.equal(cfg.objectStore.backupBucket, "mlflow-backups");
            assert.equal(cfg.tracking.image, DEFAULT_IMAGES.mlflow);
            assert.equal(cfg.tracking.replicas, 1);
            assert.equal(cfg.tracking.autoscaling.enabled, false);
            assert.deepEqual(cfg.tracking.resources.requests, { cpu: "250m", memory: "1Gi", "ephemeral-storage": "1Gi" });
            assert.deepEqual(cfg.secrets, {});
            assert.equal(cfg.ingress.proxyBodySize, "4g", "defaults to the tracking server's spool size");
            assert.deepEqual(cfg.ingress.users, ["mlflow"]);
            assert.deepEqual(cfg.backup, { enabled: true, schedule: "17 2 * * *", retain: 7 });
            assert.deepEqual(cfg.artifactBackup, { enabled: true, schedule: "47 2 * * *" }, "on wherever there is a backup bucket: every stack has one");
            assert.deepEqual(cfg.monitoring.thresholds, { errorRatio: 0.05, latencyP95Seconds: 2, volumeFreeRatio: 0.1, modelErrorRatio: 0.05 });
        });

        it("keeps the defaults of every field a stack does not set, down to each resource", () => {
            const cfg = load({ ...DEV, tracking: { replicas: 3, resources: { limits: { memory: "8Gi" } } } });
            assert.equal(cfg.tracking.replicas, 3);
            assert.equal(cfg.tracking.workers, 2);
            assert.deepEqual(cfg.tracking.resources.limits, { cpu: "2", memory: "8Gi", "ephemeral-storage": "6Gi" });
            assert.equal(cfg.tracking.resources.requests.cpu, "250m");
        });

        it("resolves the values one slice derives from another", () => {
            const off = load({ ...DEV, monitoring: { modelServers: true }, deployController: { webhooks: true } });
            assert.equal(off.monitoring.modelServers, false, "no model servers to watch without serving");
            assert.equal(off.deployController.webhooks, false, "no webhooks without the controller");
            const on = load({ ...DEV, tracking: { tmpSizeLimit: "2Gi" }, serving: { enabled: true, models: [{ name: "w", registeredModel: "w" }] }, deployController: { enabled: true } });
            assert.equal(on.monitoring.modelServers, true);
            assert.equal(on.deployController.webhooks, true);
            assert.equal(on.ingress.proxyBodySize, "2g");
        });

        it("pins the MLflow image at or above the CVE floor", () => {
            const parsed = parseImage(DEFAULT_IMAGES.mlflow);
            assert.ok(typeof parsed !== "string");
            const m = /^v(\d+)\.(\d+)\.(\d+)-full$/.exec(parsed.tag!)!;
            assert.ok(Number(m[1]) === 3 && Number(m[2]) >= 11, DEFAULT_IMAGES.mlflow);
        });
    });

    it("takes retainOnDestroy: false, the one key a throwaway stack sets to let `pulumi destroy` delete its data", () => {
        assert.equal(load({ ...DEV, retainOnDestroy: false }).retainOnDestroy, false);
        assert.equal(load({ ...DEV, retainOnDestroy: true }).retainOnDestroy, true);
    });

    // Each row: what a stack sets, and the one problem it must be refused with.
    const rejections: [string, Record<string, unknown>, RegExp][] = [
        // keys the program does not know
        ["a misspelt top-level key", { namespce: "x" }, /^mlflow-platform:namespce is not a known key \(did you mean `namespace`\?\)$/],
        ["a misspelt section", { trackng: { replicas: 3 } }, /^mlflow-platform:trackng is not a known key \(did you mean `tracking`\?\)$/],
        ["a key near nothing known", { colour: "blue" }, /^mlflow-platform:colour is not a known key \(known keys: artifactBackup, backup, database, .*, tracking\)$/],
        ["a misspelt nested key", { tracking: { replica: 2 } }, /^mlflow-platform:tracking\.replica is not a known key \(did you mean `replicas`\?\)$/],
        ["a misspelt key two levels down", { tracking: { autoscaling: { maxReplica: 3 } } }, /^mlflow-platform:tracking\.autoscaling\.maxReplica is not a known key \(did you mean `maxReplicas`\?\)$/],
        ["a misspelt key in a list entry", { serving: { models: [{ name: "w", registeredModel: "w", alais: "prod" }] } }, /^mlflow-platform:serving\.models\.0\.alais is not a known key \(did you mean `alias`\?\)$/],
        [
            "a key an earlier release had (backup.scratchSize: backups stream now)",
            { backup: { scratchSize: "10Gi" } },
            /^mlflow-platform:backup\.scratchSize = "10Gi" is no longer a key: the dump streams into objectStore\.backupBucket \(mc pipe\) without a local spool.*; remove the key$/,
        ],
        ["a nested key set without --path", { "tracking.workers": "4" }, /^mlflow-platform:tracking\.workers is a flat key: it was set without --path.*`pulumi config set --path tracking\.workers <value>`$/],
        ["a section written as a list", { tracking: [1, 2] }, /^mlflow-platform:tracking = \[1,2\] is invalid: must be of type object$/],
        ["a section written as prose", { database: "a big one" }, /^mlflow-platform:database = "a big one" is invalid: must be of type object$/],
        // values
        ["a retainOnDestroy that is not a boolean", { retainOnDestroy: "no" }, /^mlflow-platform:retainOnDestroy = "no" is invalid: must be of type boolean$/],
        ["a retainOnDestroy in a section", { database: { retainOnDestroy: false } }, /^mlflow-platform:database\.retainOnDestroy is not a known key/],
        ["a PostgreSQL disk limit its emptyDirs do not fit", { database: { resources: { requests: { "ephemeral-storage": "64Mi" }, limits: { "ephemeral-storage": "128Mi" } } } }, /^mlflow-platform:database\.resources\.limits\.ephemeral-storage = "128Mi" is invalid: must be at least 272Mi: the socket directory \(16Mi\) and \/tmp \(256Mi\)/],
        ["a /tmp that leaves no room for the metrics directory", { tracking: { tmpSizeLimit: "6Gi" } }, /^mlflow-platform:tracking\.tmpSizeLimit = "6Gi" is invalid: must not exceed tracking\.resources\.limits\.ephemeral-storage \("6Gi"\) less the 256Mi metrics directory/],
        ["a controller image on an unsupported Node.js", { deployController: { image: "node:20.20.2-bookworm-slim" } }, /^mlflow-platform:deployController\.image = "node:20\.20\.2-bookworm-slim" is invalid: runs Node\.js 20, below the 24 the controller bundle is built for/],
        ["negative replicas", { tracking: { replicas: -1 } }, /^mlflow-platform:tracking\.replicas = -1 is invalid: must be at least 1$/],
        ["fractional replicas", { tracking: { replicas: 1.5 } }, /^mlflow-platform:tracking\.replicas = 1\.5 is invalid: must be a whole number$/],
        ["a storage size that is not a quantity", { database: { storageSize: "10 gigs" } }, /^mlflow-platform:database\.storageSize = "10 gigs" is invalid: must be a Kubernetes quantity/],
        ["a zero volume", { objectStore: { storageSize: "0Gi" } }, /^mlflow-platform:objectStore\.storageSize = "0Gi" is invalid: must be above 0$/],
        ["a negative volume", { database: { storageSize: "-5Gi" } }, /^mlflow-platform:database\.storageSize = "-5Gi" is invalid: must be a Kubernetes quantity/],
        ["a bad resource quantity", { tracking: { resources: { limits: { memory: "2GB" } } } }, /^mlflow-platform:tracking\.resources\.limits\.memory = "2GB" is invalid: must be a Kubernetes quantity/],
        ["a request above the default limit", { database: { resources: { requests: { memory: "4Gi" } } } }, /^mlflow-platform:database\.resources\.requests\.memory = "4Gi" is invalid: must not exceed limits\.memory \("1Gi"\)$/],
        ["a limit below the default request", { tracking: { resources: { limits: { cpu: "100m" } } } }, /^mlflow-platform:tracking\.resources\.limits\.cpu = "100m" is invalid: must be at least requests\.cpu \("250m"\)$/],
        ["an unknown database mode", { database: { mode: "sqlite" } }, /^mlflow-platform:database\.mode = "sqlite" is invalid: must be one of "in-cluster", "external"$/],
        ["an ingress host that is not a DNS name", { ingress: { host: "https://mlflow.example.com/" } }, /^mlflow-platform:ingress\.host = "https:\/\/mlflow\.example\.com\/" is invalid: must be a DNS name/],
        ["a namespace that is not a DNS label", { namespace: "ML_Flow" }, /^mlflow-platform:namespace = "ML_Flow" is invalid: must be a DNS label/],
        ["kube-system as the namespace", { namespace: "kube-system" }, /^mlflow-platform:namespace = "kube-system" is invalid: must not be a Kubernetes system namespace/],
        ["default as the namespace", { namespace: "default" }, /^mlflow-platform:namespace = "default" is invalid: must not be a Kubernetes system namespace/],
        ["kube-node-lease as the namespace", { namespace: "kube-node-lease" }, /^mlflow-platform:namespace = "kube-node-lease" is invalid/],
        ["an unpinned image", { tracking: { image: "ghcr.io/mlflow/mlflow" } }, /^mlflow-platform:tracking\.image = "ghcr\.io\/mlflow\/mlflow" is invalid: must pin a tag or a digest$/],
        ["the latest tag", { database: { image: "postgres:latest" } }, /^mlflow-platform:database\.image = "postgres:latest" is invalid: must not use the `latest` tag$/],
        ["an uppercase repository", { objectStore: { image: "docker.io/MinIO/minio:RELEASE.2025-10-15T17-29-55Z" } }, /^mlflow-platform:objectStore\.image = .* is invalid: must be an image reference: the repository path must be lowercase$/],
        ["an image reference with a space", { deployController: { image: "node 20" } }, /^mlflow-platform:deployController\.image = "node 20" is invalid: must be an image reference/],
        ["a tracking image below the CVE floor", { tracking: { image: "registry.local:5000/mlflow/mlflow:v3.10.1-full" } }, /^mlflow-platform:tracking\.image = .* is invalid: runs MLflow 3\.10\.1, below the 3\.11 CVE floor/],
        ["an MLflow 2 tracking image", { tracking: { image: "ghcr.io/mlflow/mlflow:2.22.0" } }, /runs MLflow 2\.22\.0, below the 3\.11 CVE floor/],
        ["a wildcard allowed host", { tracking: { extraAllowedHosts: ["*"] } }, /^mlflow-platform:tracking\.extraAllowedHosts\.0 = "\*" is invalid: `\*` disables host checking$/],
        ["an allowed host that is a prefix pattern", { tracking: { extraAllowedHosts: ["10.*"] } }, /^mlflow-platform:tracking\.extraAllowedHosts\.0 = "10\.\*" is invalid: must be a host name or IPv4 address, optionally with :port, or \*\.<domain>/],
        ["an allowed host with any port", { tracking: { extraAllowedHosts: ["localhost:*"] } }, /^mlflow-platform:tracking\.extraAllowedHosts\.0 = "localhost:\*" is invalid: must be a host name/],
        ["a bucket name S3 refuses", { objectStore: { bucket: "My_Bucket" } }, /^mlflow-platform:objectStore\.bucket = "My_Bucket" is invalid: must be an S3 bucket name/],
        ["a port out of range", { database: { mode: "external", host: "db.example.com", port: 70000 } }, /^mlflow-platform:database\.port = 70000 is invalid: must be a TCP port/],
        ["a backup schedule that is not cron", { backup: { schedule: "daily" } }, /^mlflow-platform:backup\.schedule = "daily" is invalid: must be a five-field cron expression/],
        ["a cron minute out of range", { backup: { schedule: "61 2 * * *" } }, /^mlflow-platform:backup\.schedule = "61 2 \* \* \*" is invalid: is not a valid cron expression: .*61/],
        ["a cron day of week 7", { backup: { schedule: "0 2 * * 7" } }, /^mlflow-platform:backup\.schedule = "0 2 \* \* 7" is invalid: day of week must be 0-6/],
        ["a cron with seconds", { backup: { schedule: "0 0 2 * * *" } }, /^mlflow-platform:backup\.schedule = "0 0 2 \* \* \*" is invalid: must be a five-field cron expression/],
        ["a backup retention of zero", { backup: { retain: 0 } }, /^mlflow-platform:backup\.retain = 0 is invalid: must be at least 1$/],
        ["an artifact backup schedule that is not cron", { artifactBackup: { schedule: "nightly" } }, /^mlflow-platform:artifactBackup\.schedule = "nightly" is invalid: must be a five-field cron expression \(minute hour day-of-month month day-of-week\) such as "17 2 \* \* \*", or one of @yearly/],
        ["an artifact backup hour out of range", { artifactBackup: { schedule: "47 24 * * *" } }, /^mlflow-platform:artifactBackup\.schedule = "47 24 \* \* \*" is invalid: is not a valid cron expression: .*24/],
        ["an artifact backup day of week 7", { artifactBackup: { schedule: "47 2 * * 7" } }, /^mlflow-platform:artifactBackup\.schedule = "47 2 \* \* 7" is invalid: day of week must be 0-6/],
        ["an artifact backup enabled as a string", { artifactBackup: { enabled: "yes" } }, /^mlflow-platform:artifactBackup\.enabled = "yes" is invalid: must be of type boolean$/],
        ["a misspelt artifact backup key", { artifactBackup: { schedul: "47 2 * * *" } }, /^mlflow-platform:artifactBackup\.schedul is not a known key \(did you mean `schedule`\?\)$/],
        ["a retention on the artifact backup (it keeps everything)", { artifactBackup: { retain: 7 } }, /^mlflow-platform:artifactBackup\.retain is not a known key/],
        ["an unlimited upload size", { ingress: { proxyBodySize: "0" } }, /^mlflow-platform:ingress\.proxyBodySize = "0" is invalid: must be above 0/],
        ["two TLS sources", { ingress: { tls: { secretName: "a", clusterIssuer: "b" } } }, /^mlflow-platform:ingress\.tls = \{"secretName":"a","clusterIssuer":"b"\} is invalid: must set exactly one of secretName, clusterIssuer, issuer$/],
        ["a repeated ingress user", { ingress: { users: ["ann", "ann"] } }, /^mlflow-platform:ingress\.users = \["ann","ann"\] is invalid: must not repeat a user$/],
        ["an ingress user with a colon", { ingress: { users: ["a:b"] } }, /^mlflow-platform:ingress\.users\.0 = "a:b" is invalid: must be 1-64 of letters/],
        ["a snippet annotation", { ingress: { extraAnnotations: { "nginx.ingress.kubernetes.io/configuration-snippet": "return 200;" } } }, /^mlflow-platform:ingress\.extraAnnotations\.nginx\.ingress\.kubernetes\.io\/configuration-snippet = "return 200;" is invalid: is a snippet annotation/],
        ["an annotation the platform sets", { ingress: { extraAnnotations: { "nginx.ingress.kubernetes.io/auth-type": "digest" } } }, /^mlflow-platform:ingress\.extraAnnotations\.nginx\.ingress\.kubernetes\.io\/auth-type = "digest" is invalid: is set by the platform; use its ingress\.\* setting instead$/],
        ["an annotation with a line break", { ingress: { extraAnnotations: { "example.com/x": "a\nload_module /x.so;" } } }, /^mlflow-platform:ingress\.extraAnnotations\.example\.com\/x = .* is invalid: has a line break in its value/],
        ["a burst without a rate", { ingress: { rateLimit: { burstMultiplier: 3 } } }, /^mlflow-platform:ingress\.rateLimit\.rps is missing: ingress\.rateLimit\.burstMultiplier is a multiple of it$/],
        ["a scrape interval that is not a duration", { monitoring: { scrapeInterval: "30 seconds" } }, /^mlflow-platform:monitoring\.scrapeInterval = "30 seconds" is invalid: must be a Prometheus duration/],
        ["a zero scrape interval", { monitoring: { scrapeInterval: "0s" } }, /^mlflow-platform:monitoring\.scrapeInterval = "0s" is invalid: must not be zero$/],
        ["an error ratio above 1", { monitoring: { thresholds: { errorRatio: 5 } } }, /^mlflow-platform:monitoring\.thresholds\.errorRatio = 5 is invalid: must be below 1$/],
        ["an unmeasurable p95", { monitoring: { thresholds: { latencyP95Seconds: 30 } } }, /^mlflow-platform:monitoring\.thresholds\.latencyP95Seconds = 30 is invalid: must be at most 10/],
        ["a runbook URL with a fragment", { monitoring: { runbookBaseUrl: "https://wiki.example.com/r#x" } }, /^mlflow-platform:monitoring\.runbookBaseUrl = .* is invalid: must not have a fragment/],
        ["a dashboard label with a space", { monitoring: { dashboard: { label: "grafana dashboard" } } }, /^mlflow-platform:monitoring\.dashboard\.label = "grafana dashboard" is invalid: must be a label key$/],
        ["a served model name that is not a DNS label", { serving: { models: [{ name: "Wine_1", registeredModel: "wine" }] } }, /^mlflow-platform:serving\.models\.0\.name = "Wine_1" is invalid: must be a DNS label starting with a letter/],
        ["a 46-character model name", { serving: { models: [{ name: "w".repeat(46), registeredModel: "wine" }] } }, /^mlflow-platform:serving\.models\.0\.name = .* is invalid: .*at most 45 characters$/],
        ["two served models with one name", { serving: { models: [{ name: "wine", registeredModel: "a" }, { name: "wine", registeredModel: "b" }] } }, /^mlflow-platform:serving\.models = .* is invalid: must not repeat a model name$/],
        ["a canary share of 100%", { serving: { models: [{ name: "wine", registeredModel: "a", canary: { storageUri: "s3://mlflow/x", trafficPercent: 100 } }] } }, /^mlflow-platform:serving\.models\.0\.canary\.trafficPercent = 100 is invalid: must be 1-99$/],
        ["a storageUri outside S3", { serving: { models: [{ name: "wine", registeredModel: "a", storageUri: "file:///etc" }] } }, /^mlflow-platform:serving\.models\.0\.storageUri = "file:\/\/\/etc" is invalid: must be an s3:\/\/bucket\/path URI/],
        ["a storageUri naming only a bucket", { serving: { models: [{ name: "wine", registeredModel: "a", storageUri: "s3://mlflow" }] } }, /^mlflow-platform:serving\.models\.0\.storageUri = "s3:\/\/mlflow" is invalid: must be an s3:\/\/bucket\/path URI naming the model directory$/],
        ["the reserved alias latest", { serving: { models: [{ name: "wine", registeredModel: "a", alias: "latest" }] } }, /^mlflow-platform:serving\.models\.0\.alias = "latest" is invalid: must be an MLflow alias .*reserved by MLflow\)$/],
        ["the reserved alias v3", { serving: { models: [{ name: "wine", registeredModel: "a", alias: "v3" }] } }, /^mlflow-platform:serving\.models\.0\.alias = "v3" is invalid/],
        ["a poll interval of 1 s", { deployController: { pollIntervalSeconds: 1 } }, /^mlflow-platform:deployController\.pollIntervalSeconds = 1 is invalid: must be at least 5$/],
        // rules between keys, naming the key the stack sets
        ["maxReplicas below minReplicas", { tracking: { autoscaling: { enabled: true, maxReplicas: 1 } } }, /^mlflow-platform:tracking\.autoscaling\.maxReplicas = 1 is invalid: must be at least minReplicas \(2\)$/],
        ["minReplicas above the default maxReplicas", { tracking: { autoscaling: { enabled: true, minReplicas: 6 } } }, /^mlflow-platform:tracking\.autoscaling\.minReplicas = 6 is invalid: must not exceed maxReplicas \(4\)$/],
        ["a served model's min above max", { serving: { models: [{ name: "w", registeredModel: "w", replicas: { min: 3, max: 2 } }] } }, /serving\.models\.0\.replicas\.(max|min) = [23] is invalid/],
        ["a /tmp larger than the default ephemeral-storage limit", { tracking: { tmpSizeLimit: "10Gi" } }, /^mlflow-platform:tracking\.tmpSizeLimit = "10Gi" is invalid: must not exceed tracking\.resources\.limits\.ephemeral-storage \("6Gi"\)/],
        ["an ephemeral-storage limit below the default /tmp", { tracking: { resources: { requests: { "ephemeral-storage": "1Gi" }, limits: { "ephemeral-storage": "3Gi" } } } }, /^mlflow-platform:tracking\.resources\.limits\.ephemeral-storage = "3Gi" is invalid: must be at least tracking\.tmpSizeLimit \("4Gi"\)/],
        ["an upload limit above the default spool space", { ingress: { proxyBodySize: "5g" } }, /^mlflow-platform:ingress\.proxyBodySize = "5g" is invalid: must not exceed tracking\.tmpSizeLimit \("4Gi"\)/],
        ["a spool space below the default upload limit's source", { ingress: { proxyBodySize: "3g" }, tracking: { tmpSizeLimit: "2Gi", resources: { limits: { "ephemeral-storage": "3Gi" } } } }, /ingress\.proxyBodySize = "3g" is invalid|tracking\.tmpSizeLimit = "2Gi" is invalid/],
        ["a backup bucket equal to the artifact bucket", { objectStore: { bucket: "mlx", backupBucket: "mlx" } }, /^mlflow-platform:objectStore\.(backupBucket|bucket) = "mlx" is invalid: must differ from objectStore\./],
        ["an artifact bucket too long to derive the backup bucket", { objectStore: { bucket: "b".repeat(60) } }, /^mlflow-platform:objectStore\.bucket = .* is invalid: is too long to derive backupBucket/],
        ["more tracking pods than the database can serve", { tracking: { replicas: 10 } }, /^mlflow-platform:tracking\.replicas = 10 is invalid: needs 100 connections .* allowed: at most 8/],
        ["more workers than the database can serve", { tracking: { workers: 20 } }, /^mlflow-platform:tracking\.workers = 20 is invalid: needs 100 connections/],
        ["an autoscaler ceiling the database cannot serve", { tracking: { autoscaling: { enabled: true, maxReplicas: 12 } } }, /^mlflow-platform:tracking\.autoscaling\.maxReplicas = 12 is invalid: needs 120 connections/],
        ["too few database connections", { database: { maxConnections: 10 } }, /^mlflow-platform:database\.maxConnections = 10 is invalid: must be at least 13/],
        ["a served model with nothing to resolve its alias", { serving: { enabled: true, resolveAliases: false, models: [{ name: "wine", registeredModel: "a" }] } }, /^mlflow-platform:serving\.models\.0\.storageUri is missing: model "wine" needs an s3:\/\/ storageUri when serving\.resolveAliases is false/],
        ["a deploy controller with nothing to follow", { deployController: { enabled: true } }, /^mlflow-platform:deployController\.enabled = true is invalid: needs serving\.enabled and at least one serving\.models entry/],
        // settings that cannot take effect
        ["KServe installed with serving off", { serving: { installKServe: true } }, /^mlflow-platform:serving\.installKServe = true is invalid: has no effect while serving\.enabled is false/],
        ["the monitoring stack installed with monitoring off", { monitoring: { enabled: false, installStack: true } }, /^mlflow-platform:monitoring\.(installStack|enabled) = (true|false) is invalid/],
        [
            "image mode followed by the deploy controller",
            { serving: { enabled: true, imageRegistry: "registry.example.com/ml", models: [{ name: "w", registeredModel: "w" }] }, deployController: { enabled: true } },
            /^mlflow-platform:(serving\.imageRegistry|deployController\.enabled) = .* is invalid: cannot/,
        ],
        ["a storageUri in image mode", { serving: { enabled: true, imageRegistry: "registry.example.com/ml", models: [{ name: "w", registeredModel: "w", storageUri: "s3://mlflow/w" }] } }, /serving\.models\.0\.storageUri = "s3:\/\/mlflow\/w" is invalid: has no effect in image mode/],
        // TLS
        ["plaintext with TLS at once", { ingress: { tls: { clusterIssuer: "le" }, allowPlaintext: true } }, /ingress\.(allowPlaintext|tls) = .* is invalid: must not be set together/],
    ];
    for (const [what, values, expected] of rejections) {
        it(`refuses ${what}, by key, before any resource`, () => {
            const problems = problemsOf({ ...DEV, ...values });
            assert.ok(problems.some((p) => expected.test(p)), `no problem matches ${expected}:\n${problems.join("\n")}`);
            for (const p of problems) assert.match(p, /^mlflow-platform:/, "every problem names a key");
        });
    }

    it("names the key the stack sets in a rule between keys, not the ones left at their default", () => {
        const cases: [Record<string, unknown>, string, string[]][] = [
            [{ tracking: { replicas: 10 } }, "tracking.replicas", ["database.maxConnections", "tracking.workers", "tracking.dbPoolSize"]],
            [{ database: { maxConnections: 10 } }, "database.maxConnections", ["tracking.replicas", "tracking.workers"]],
            [{ tracking: { autoscaling: { enabled: true, minReplicas: 6 } } }, "tracking.autoscaling.minReplicas", ["tracking.autoscaling.maxReplicas"]],
            [{ database: { resources: { requests: { memory: "4Gi" } } } }, "database.resources.requests.memory", ["database.resources.limits.memory"]],
            [{ tracking: { tmpSizeLimit: "10Gi" } }, "tracking.tmpSizeLimit", ["tracking.resources.limits.ephemeral-storage"]],
            [{ ingress: { proxyBodySize: "5g" } }, "ingress.proxyBodySize", ["tracking.tmpSizeLimit"]],
        ];
        for (const [values, blamed, spared] of cases) {
            const problems = problemsOf({ ...DEV, ...values });
            assert.ok(problems.some((p) => p.startsWith(`mlflow-platform:${blamed} `)), `${blamed} must be named:\n${problems.join("\n")}`);
            for (const key of spared) assert.ok(!problems.some((p) => p.startsWith(`mlflow-platform:${key} `)), `${key} was not changed and must not be named:\n${problems.join("\n")}`);
        }
        // When the stack sets both sides, both are named.
        const both = problemsOf({ ...DEV, tracking: { autoscaling: { enabled: true, minReplicas: 4, maxReplicas: 2 } } });
        assert.ok(both.some((p) => p.startsWith("mlflow-platform:tracking.autoscaling.minReplicas = 4")) && both.some((p) => p.startsWith("mlflow-platform:tracking.autoscaling.maxReplicas = 2")));
    });

    describe("secrets", () => {
        it("refuses a secret key given in plaintext, saying how to set it", () => {
            for (const key of ["databasePassword", "s3AccessKeyId", "s3SecretAccessKey", "s3ReadOnlyAccessKeyId", "s3ReadOnlySecretAccessKey"]) {
                const problems = problemsOf({ ...DEV, [key]: "hunter2" });
                assert.ok(problems.includes(`mlflow-platform:${key} is set in plaintext: it must be a secret; set it with \`pulumi config set --secret ${key} <value>\``), problems.join("\n"));
                assert.ok(!problems.join("\n").includes("hunter2"), "the value is never printed");
            }
        });

        it("requires host and password for an external database", () => {
            const problems = problemsOf({ ...DEV, database: { mode: "external" } });
            assert.ok(problems.includes('mlflow-platform:database.host is missing: required when database.mode is "external"'));
            assert.ok(problems.some((p) => /^mlflow-platform:databasePassword is missing: .*pulumi config set --secret databasePassword/.test(p)));
        });

        it("accepts an external database with its password as a secret", async () => {
            const cfg = load({ ...DEV, database: { mode: "external", host: "pg.example.com", port: 6432 }, databasePassword: "p@ss:w/rd%#" }, ["databasePassword"]);
            assert.equal(cfg.database.host, "pg.example.com");
            assert.equal(await pulumi.isSecret(cfg.secrets.databasePassword!), true);
        });

        it("refuses a secret that has no effect", () => {
            assert.ok(problemsOf({ ...DEV, databasePassword: "x" }, ["databasePassword"]).some((p) => /^mlflow-platform:databasePassword is invalid: has no effect: database\.mode is "in-cluster"/.test(p)));
            assert.ok(problemsOf({ ...DEV, s3AccessKeyId: "x" }, ["s3AccessKeyId"]).some((p) => /^mlflow-platform:s3AccessKeyId is invalid: has no effect: objectStore\.mode is "minio"/.test(p)));
        });

        it("requires the endpoint, then the credentials, for s3 mode", () => {
            assert.ok(problemsOf({ ...DEV, objectStore: { mode: "s3" } }).some((p) => /^mlflow-platform:objectStore\.endpoint is missing: required when objectStore\.mode is "s3"/.test(p)));
            const problems = problemsOf({ ...DEV, objectStore: { mode: "s3", endpoint: "https://s3.example.com" } });
            for (const key of ["s3AccessKeyId", "s3SecretAccessKey"]) assert.ok(problems.some((p) => p.startsWith(`mlflow-platform:${key} is missing: required when objectStore.mode is "s3"`)), key);
            assert.ok(problemsOf({ ...DEV, objectStore: { mode: "s3", endpoint: "ftp://x" } }).includes('mlflow-platform:objectStore.endpoint = "ftp://x" is invalid: must be an http(s) URL'));
        });

        it("refuses a read-only S3 key without its secret", () => {
            const problems = problemsOf(
                { ...DEV, objectStore: { mode: "s3", endpoint: "https://s3.example.com" }, s3AccessKeyId: "a", s3SecretAccessKey: "b", s3ReadOnlyAccessKeyId: "c" },
                ["s3AccessKeyId", "s3SecretAccessKey", "s3ReadOnlyAccessKeyId"],
            );
            assert.ok(problems.some((p) => p.startsWith("mlflow-platform:s3ReadOnlySecretAccessKey is missing: the read-only pair is set together")), problems.join("\n"));
        });
    });

    describe("TLS", () => {
        it("refuses a stack that is not a development stack without TLS, naming both ways out", () => {
            const problems = problemsOf({});
            assert.equal(problems.length, 1);
            assert.match(problems[0], /^mlflow-platform:ingress\.tls is missing: this stack is not marked `development: true`.*ingress\.tls\.secretName, clusterIssuer or issuer.*ingress\.allowPlaintext: true/);
        });

        it("accepts TLS, an explicit allowPlaintext, or a development stack", () => {
            assert.doesNotThrow(() => load({ ingress: { tls: { clusterIssuer: "letsencrypt-prod" } } }));
            assert.doesNotThrow(() => load({ ingress: { allowPlaintext: true } }));
            assert.doesNotThrow(() => load({ development: true }));
        });
    });

    describe("values Kubernetes and registries take", () => {
        it("accepts private registries with ports, digests, and tags without a version", () => {
            const cfg = load({
                ...DEV,
                tracking: { image: "registry.local:5000/mlflow/mlflow:v3.17.2-full" },
                database: { image: `registry.local:5000/library/postgres@sha256:${"a".repeat(64)}` },
                objectStore: { image: "localhost/minio:custom-build", clientImage: "mirror.example.com:8443/minio/mc:RELEASE.2025-08-13T08-35-41Z" },
                deployController: { image: "[::1]:5000/node:22.11.0" },
            });
            assert.equal(cfg.tracking.image, "registry.local:5000/mlflow/mlflow:v3.17.2-full");
            assert.doesNotThrow(() => load({ ...DEV, tracking: { image: "mirror.example.com/mlflow:my-build" } }), "a tag without a version is not checked against the floor");
            assert.doesNotThrow(() => load({ ...DEV, tracking: { image: `ghcr.io/mlflow/mlflow@sha256:${"b".repeat(64)}` } }));
        });

        it("accepts cron descriptors and named days as Kubernetes does", () => {
            for (const schedule of ["@daily", "*/15 * * * *", "0 3 * * MON-FRI", "30 1 1,15 * *"]) assert.equal(load({ ...DEV, backup: { schedule } }).backup.schedule, schedule);
            for (const schedule of ["@hourly", "47 */6 * * *", "0 4 * * SUN"]) assert.equal(load({ ...DEV, artifactBackup: { schedule } }).artifactBackup.schedule, schedule);
            assert.equal(load({ ...DEV, artifactBackup: { enabled: false } }).artifactBackup.enabled, false);
        });
    });

    it("reports every problem of every slice at once", () => {
        const problems = problemsOf({ nmespace: "x", tracking: { replicas: 0, workers: 0 }, database: { storageSize: "big" }, backup: { retain: 0 } });
        for (const key of ["nmespace", "tracking.replicas", "tracking.workers", "database.storageSize", "backup.retain", "ingress.tls"]) {
            assert.ok(problems.some((p) => p.startsWith(`mlflow-platform:${key} `)), `${key} missing from:\n${problems.join("\n")}`);
        }
    });

    it("converts between Kubernetes quantities and nginx sizes", () => {
        assert.equal(nginxSize("4Gi"), "4g");
        assert.equal(nginxSize("1536Mi"), "1536m");
        assert.equal(nginxSizeValue("2g"), quantityValue("2Gi"));
        assert.throws(() => nginxSizeValue("2G"), /not an nginx size/);
        assert.ok(quantityValue("1Gi") > quantityValue("1G"));
        assert.equal(quantityValue("500m"), 0.5);
        assert.throws(() => quantityValue("1 GB"), /not a Kubernetes quantity/);
    });
});
