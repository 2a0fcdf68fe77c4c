import assert from "assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { quantityValue } from "../components/fields";
import { nginxSize, nginxSizeValue } from "../components/authIngress/schema";
import { ConfigError, loadConfig, PROJECT } from "../stacks/config";
import { DEFAULT_IMAGES } from "../components/images";
import { installMocks, setStackConfig } from "./harness";

/** Loads config from the given stack values; returns the error message if loading throws. */
function load(values: Record<string, unknown>, secretKeys: string[] = []) {
    setStackConfig(values, secretKeys);
    return loadConfig(new pulumi.Config(PROJECT));
}
function errorOf(values: Record<string, unknown>, secretKeys: string[] = []): string {
    try {
        load(values, secretKeys);
    } catch (e) {
        assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
        return e.message;
    }
    assert.fail("expected loadConfig to reject the configuration");
}

describe("stack configuration", () => {
    before(() => installMocks());

    it("fills every default when the stack sets nothing", () => {
        const cfg = load({});
        assert.equal(cfg.namespace, "mlflow");
        assert.equal(cfg.database.mode, "in-cluster");
        assert.equal(cfg.database.image, DEFAULT_IMAGES.postgres);
        assert.equal(cfg.objectStore.mode, "minio");
        assert.equal(cfg.objectStore.bucket, "mlflow");
        assert.equal(cfg.tracking.image, DEFAULT_IMAGES.mlflow);
        assert.equal(cfg.tracking.replicas, 1);
        assert.equal(cfg.tracking.autoscaling.enabled, false);
        assert.deepEqual(cfg.tracking.resources.requests, { cpu: "250m", memory: "1Gi", "ephemeral-storage": "1Gi" });
        assert.deepEqual(cfg.secrets, {});
        assert.equal(cfg.objectStore.backupBucket, "mlflow-backups");
        assert.equal(cfg.ingress.proxyBodySize, "4g", "defaults to the tracking server's spool size");
        assert.deepEqual(cfg.ingress.users, ["mlflow"]);
        assert.deepEqual(cfg.backup, { enabled: true, schedule: "17 2 * * *", retain: 7, scratchSize: "10Gi" });
    });

    it("keeps defaults for the fields a stack does not override inside an object", () => {
        const cfg = load({ tracking: { replicas: 3, resources: { limits: { memory: "8Gi" } } } });
        assert.equal(cfg.tracking.replicas, 3);
        assert.equal(cfg.tracking.workers, 2);
        assert.equal(cfg.tracking.resources.limits.memory, "8Gi");
        assert.equal(cfg.tracking.resources.requests.cpu, "250m");
    });

    it("pins the MLflow image at or above the 3.11 CVE floor", () => {
        const m = /mlflow:v(\d+)\.(\d+)\.(\d+)-full$/.exec(DEFAULT_IMAGES.mlflow);
        assert.ok(m, DEFAULT_IMAGES.mlflow);
        assert.ok(Number(m[1]) === 3 && Number(m[2]) >= 11, `MLflow ${m[0]} is below 3.11`);
    });

    const rejections: [string, Record<string, unknown>, RegExp][] = [
        ["negative replicas", { tracking: { replicas: -1 } }, /mlflow-platform:tracking\.replicas = -1 is invalid: must be at least 1/],
        ["fractional replicas", { tracking: { replicas: 1.5 } }, /tracking\.replicas = 1\.5 is invalid: must be a whole number/],
        ["a storage size that is not a quantity", { database: { storageSize: "10 gigs" } }, /database\.storageSize = "10 gigs" is invalid: must be a Kubernetes quantity/],
        ["a bad resource quantity", { tracking: { resources: { limits: { memory: "2GB" } } } }, /tracking\.resources\.limits\.memory = "2GB" is invalid: must be a Kubernetes quantity/],
        ["an unknown database mode", { database: { mode: "sqlite" } }, /database\.mode = "sqlite" is invalid: must be one of "in-cluster", "external"/],
        ["an unknown object store mode", { objectStore: { mode: "gcs" } }, /objectStore\.mode = "gcs" is invalid: must be one of "minio", "s3"/],
        ["an ingress host that is not a DNS name", { ingress: { host: "https://mlflow.example.com/" } }, /ingress\.host = "https:\/\/mlflow\.example\.com\/" is invalid: must be a DNS name/],
        ["a namespace that is not a DNS label", { namespace: "ML_Flow" }, /mlflow-platform:namespace = "ML_Flow" is invalid: must be a DNS label/],
        ["an unpinned image", { tracking: { image: "ghcr.io/mlflow/mlflow" } }, /tracking\.image = "ghcr.io\/mlflow\/mlflow" is invalid: must pin a tag or a sha256 digest/],
        ["the latest tag", { database: { image: "postgres:latest" } }, /database\.image = "postgres:latest" is invalid: must not use the `latest` tag/],
        ["a misspelt field", { tracking: { replica: 2 } }, /mlflow-platform:tracking\.replica is not a known key \(did you mean `replicas`\?\)/],
        ["a wildcard allowed host", { tracking: { extraAllowedHosts: ["*"] } }, /tracking\.extraAllowedHosts\.0 = "\*" is invalid: `\*` disables host checking/],
        ["maxReplicas below minReplicas", { tracking: { autoscaling: { enabled: true, minReplicas: 4, maxReplicas: 2 } } }, /tracking\.autoscaling\.maxReplicas = 2 is invalid: must be at least minReplicas \(4\)/],
        ["a bucket name S3 refuses", { objectStore: { bucket: "My_Bucket" } }, /objectStore\.bucket = "My_Bucket" is invalid: must be an S3 bucket name/],
        ["a port out of range", { database: { mode: "external", host: "db.example.com", port: 70000 } }, /database\.port = 70000 is invalid: must be a TCP port/],
        ["a /tmp larger than the ephemeral-storage limit", { tracking: { tmpSizeLimit: "10Gi", resources: { limits: { "ephemeral-storage": "4Gi" } } } }, /tracking\.tmpSizeLimit = "10Gi" is invalid: must not exceed tracking\.resources\.limits\.ephemeral-storage \("4Gi"\)/],
        ["a backup schedule that is not cron", { backup: { schedule: "daily" } }, /backup\.schedule = "daily" is invalid: must be a five-field cron expression/],
        ["a backup retention of zero", { backup: { retain: 0 } }, /backup\.retain = 0 is invalid: must be at least 1/],
        ["a backup bucket equal to the artifact bucket", { objectStore: { bucket: "mlx", backupBucket: "mlx" } }, /objectStore\.backupBucket = "mlx" is invalid: must differ from objectStore\.bucket/],
        ["an upload limit above the server's spool space", { tracking: { tmpSizeLimit: "2Gi" }, ingress: { proxyBodySize: "3g" } }, /ingress\.proxyBodySize = "3g" is invalid: must be between 1 and tracking\.tmpSizeLimit \("2Gi"\)/],
        ["an unlimited upload size", { ingress: { proxyBodySize: "0" } }, /ingress\.proxyBodySize = "0" is invalid/],
        ["two TLS sources", { ingress: { tls: { secretName: "a", clusterIssuer: "b" } } }, /ingress\.tls = \{"secretName":"a","clusterIssuer":"b"\} is invalid: must set exactly one of secretName, clusterIssuer, issuer/],
        ["a repeated ingress user", { ingress: { users: ["ann", "ann"] } }, /ingress\.users = \["ann","ann"\] is invalid: must not repeat a user/],
        ["an ingress user with a colon", { ingress: { users: ["a:b"] } }, /ingress\.users\.0 = "a:b" is invalid: must be 1-64 of letters/],
        ["a scrape timeout above the interval", { monitoring: { scrapeInterval: "15s", scrapeTimeout: "1m" } }, /monitoring\.scrapeTimeout = "1m" is invalid: must not exceed monitoring\.scrapeInterval \("15s"\)/],
        ["a scrape interval that is not a duration", { monitoring: { scrapeInterval: "30 seconds" } }, /monitoring\.scrapeInterval = "30 seconds" is invalid: must be a Prometheus duration/],
        ["an error ratio above 1", { monitoring: { thresholds: { errorRatio: 5 } } }, /monitoring\.thresholds\.errorRatio = 5 is invalid: must be below 1/],
        ["a served model name that is not a DNS label", { serving: { models: [{ name: "Wine_1", registeredModel: "wine" }] } }, /serving\.models\.0\.name = "Wine_1" is invalid: must be a DNS label starting with a letter/],
        ["two served models with one name", { serving: { models: [{ name: "wine", registeredModel: "a" }, { name: "wine", registeredModel: "b" }] } }, /serving\.models = .* is invalid: must not repeat a model name/],
        ["a canary share of 100%", { serving: { models: [{ name: "wine", registeredModel: "a", canary: { storageUri: "s3://mlflow/x", trafficPercent: 100 } }] } }, /serving\.models\.0\.canary\.trafficPercent = 100 is invalid: must be 1-99/],
        ["a storageUri outside S3", { serving: { models: [{ name: "wine", registeredModel: "a", storageUri: "file:///etc" }] } }, /serving\.models\.0\.storageUri = "file:\/\/\/etc" is invalid: must be an s3:\/\/bucket\/path URI/],
        ["the reserved alias latest", { serving: { models: [{ name: "wine", registeredModel: "a", alias: "latest" }] } }, /serving\.models\.0\.alias = "latest" is invalid: `latest` and `v<N>` are reserved by MLflow/],
        [
            "a served model with nothing to resolve its alias",
            { serving: { enabled: true, resolveAliases: false, models: [{ name: "wine", registeredModel: "a" }] } },
            /serving\.models\.0\.storageUri is missing: model "wine" needs an s3:\/\/ storageUri when serving\.resolveAliases is false, unless deployController\.enabled/,
        ],
        ["a deploy controller with nothing to follow", { deployController: { enabled: true } }, /deployController\.enabled = true is invalid: the controller follows serving\.models, so it needs serving\.enabled and at least one model/],
        ["a connection budget over max_connections", { tracking: { replicas: 10, workers: 8 }, database: { maxConnections: 100 } }, /database\.maxConnections = 100 is too small: the tracking server may open 400 connections.*allowed: at least 500/],
    ];
    for (const [what, values, expected] of rejections) {
        it(`rejects ${what}, naming the key, the value and what is allowed`, () => {
            assert.match(errorOf(values), expected);
        });
    }

    it("converts between Kubernetes quantities and nginx sizes", () => {
        assert.equal(nginxSize("4Gi"), "4g");
        assert.equal(nginxSize("1536Mi"), "1536m");
        assert.equal(nginxSizeValue("2g"), quantityValue("2Gi"));
        assert.throws(() => nginxSizeValue("2G"), /not an nginx size/);
    });

    it("compares quantities across units", () => {
        assert.ok(quantityValue("1Gi") > quantityValue("1G"));
        assert.equal(quantityValue("500m"), 0.5);
        assert.equal(quantityValue("1536Mi"), 1.5 * 2 ** 30);
        assert.throws(() => quantityValue("1 GB"), /not a Kubernetes quantity/);
    });

    it("reports every problem at once", () => {
        const msg = errorOf({ tracking: { replicas: 0, workers: 0 }, database: { storageSize: "big" } });
        assert.match(msg, /tracking\.replicas/);
        assert.match(msg, /tracking\.workers/);
        assert.match(msg, /database\.storageSize/);
    });

    it("requires host and password for an external database", () => {
        const msg = errorOf({ database: { mode: "external" } });
        assert.match(msg, /mlflow-platform:database\.host is missing: required when database\.mode is "external"/);
        assert.match(msg, /mlflow-platform:databasePassword is missing/);
    });

    it("accepts an external database with its password as a secret", async () => {
        const cfg = load({ database: { mode: "external", host: "pg.example.com", port: 6432 }, databasePassword: "p@ss:w/rd%#" }, ["databasePassword"]);
        assert.equal(cfg.database.host, "pg.example.com");
        assert.equal(await pulumi.isSecret(cfg.secrets.databasePassword!), true);
    });

    it("requires endpoint and credentials for s3 mode", () => {
        const msg = errorOf({ objectStore: { mode: "s3" } });
        assert.match(msg, /objectStore\.endpoint is missing/);
        assert.match(msg, /s3AccessKeyId is missing/);
        assert.match(msg, /s3SecretAccessKey is missing/);
        assert.match(errorOf({ objectStore: { mode: "s3", endpoint: "ftp://x" } }), /objectStore\.endpoint = "ftp:\/\/x" is invalid: must be an http\(s\) URL/);
    });

    it("rejects a read-only S3 key without its secret", () => {
        const msg = errorOf(
            { objectStore: { mode: "s3", endpoint: "https://s3.example.com" }, s3AccessKeyId: "a", s3SecretAccessKey: "b", s3ReadOnlyAccessKeyId: "c" },
            ["s3AccessKeyId", "s3SecretAccessKey", "s3ReadOnlyAccessKeyId"],
        );
        assert.match(msg, /s3ReadOnlyAccessKeyId and s3ReadOnlySecretAccessKey must be set together/);
    });
});
