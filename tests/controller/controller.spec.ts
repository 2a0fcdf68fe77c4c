// The deploy controller's decision logic and building blocks, as table cases: what to do for every
// registry answer × serving state, backoff bounds, webhook signatures (MLflow 3.17.2's scheme),
// config validation, metrics rendering, and the reconcile loop with in-memory registry and target.
import assert from "assert/strict";
import { createHmac } from "crypto";
import { readFileSync } from "fs";
import * as path from "path";
import { backoffCeiling, backoffDelay } from "../../controller/backoff";
import { parseConfig } from "../../controller/config";
import { Controller } from "../../controller/controller";
import { Action, decide, Desired, Observed } from "../../controller/decide";
import { createLogger } from "../../controller/log";
import { controllerMetrics, Registry } from "../../controller/metrics";
import { isAbsent, Resolution } from "../../controller/registry";
import { TargetError, ServingTarget, Apply } from "../../controller/targets/types";
import { DeliveryLog, parseDelivery, signDelivery, verifyDelivery } from "../../controller/webhook";
import { RegistryError } from "../../shared/mlflowRegistry";

import { FIXTURES } from "../harness";
const S3_V1 = "s3://mlflow/1/models/m-aaa/artifacts";
const S3_V2 = "s3://mlflow/1/models/m-bbb/artifacts";

describe("controller: decide()", () => {
    const serve = (version: string, artifact: string): Desired => ({ kind: "serve", version, artifact, storageUri: artifact, source: "models:/m-test" });
    const cases: { name: string; desired: Desired; observed: Observed; canCreate?: boolean; expect: Action["type"]; check?: (a: Action) => void }[] = [
        { name: "missing target → create", desired: serve("1", S3_V1), observed: { exists: false }, expect: "create", check: (a) => assert.deepEqual(a, { type: "create", version: "1", artifact: S3_V1 }) },
        { name: "missing target that cannot be created → keep with a warning", desired: serve("1", S3_V1), observed: { exists: false }, canCreate: false, expect: "keep" },
        { name: "same artifact and version → nothing", desired: serve("2", S3_V2), observed: { exists: true, artifact: S3_V2, version: "2" }, expect: "none" },
        {
            name: "new version → patch from the old one",
            desired: serve("2", S3_V2),
            observed: { exists: true, artifact: S3_V1, version: "1" },
            expect: "patch",
            check: (a) => assert.deepEqual(a, { type: "patch", version: "2", artifact: S3_V2, fromVersion: "1", fromArtifact: S3_V1 }),
        },
        { name: "same artifact, version annotation missing (created by Pulumi) → patch once", desired: serve("1", S3_V1), observed: { exists: true, artifact: S3_V1 }, expect: "patch" },
        { name: "same version number, different artifact (hand edit) → patch back", desired: serve("1", S3_V1), observed: { exists: true, artifact: S3_V2, version: "1" }, expect: "patch" },
        { name: "rollback: alias moved to an older version → patch", desired: serve("1", S3_V1), observed: { exists: true, artifact: S3_V2, version: "2" }, expect: "patch" },
        { name: "no storageUri at all → patch", desired: serve("1", S3_V1), observed: { exists: true }, expect: "patch" },
        { name: "image-mode InferenceService → keep, never patched", desired: serve("1", S3_V1), observed: { exists: true, version: "1", incompatible: "custom container" }, expect: "keep" },
        { name: "alias removed, target exists → keep with a warning", desired: { kind: "absent", reason: "m@champion does not exist" }, observed: { exists: true, artifact: S3_V1, version: "1" }, expect: "keep", check: (a) => assert.match((a as any).warning, /left as it is \(version 1\)/) },
        { name: "alias removed, no target → nothing (nothing to serve)", desired: { kind: "absent", reason: "gone" }, observed: { exists: false }, expect: "none" },
        { name: "version not READY → keep", desired: { kind: "unservable", version: "3", reason: "status PENDING_REGISTRATION" }, observed: { exists: true, artifact: S3_V1, version: "1" }, expect: "keep" },
        { name: "unmappable source, no target → keep (no create)", desired: { kind: "unservable", version: "3", reason: "file:/ source" }, observed: { exists: false }, expect: "keep" },
    ];
    for (const c of cases) {
        it(c.name, () => {
            const a = decide(c.desired, c.observed, c.canCreate ?? true);
            assert.equal(a.type, c.expect);
            c.check?.(a);
        });
    }
});

describe("controller: backoff", () => {
    const p = { initialMs: 1000, maxMs: 60000 };
    for (const [attempt, ceiling] of [
        [1, 1000],
        [2, 2000],
        [3, 4000],
        [6, 32000],
        [7, 60000],
        [50, 60000],
        [100000, 60000],
    ]) {
        it(`attempt ${attempt}: ceiling ${ceiling} ms, delay within [ceiling/2, ceiling]`, () => {
            assert.equal(backoffCeiling(attempt, p), ceiling);
            assert.equal(backoffDelay(attempt, p, () => 0), ceiling / 2);
            assert.equal(backoffDelay(attempt, p, () => 1), ceiling);
            const d = backoffDelay(attempt, p);
            assert.ok(d >= ceiling / 2 && d <= ceiling);
        });
    }
    it("rejects attempt 0", () => assert.throws(() => backoffCeiling(0, p), /attempt must be an integer ≥ 1/));
});

describe("controller: webhook signatures (MLflow 3.17.2 format)", () => {
    const secret = "s3cr3t";
    const body = Buffer.from(JSON.stringify({ entity: "model_version_alias", action: "created", timestamp: "2026-11-24T21:03:25+00:00", data: { name: "wine", alias: "champion", version: "2" } }));
    const id = "3dda6e52-651b-4999-ba29-2e841a995942";
    const ts = "1795554205";
    const headers = (sig?: string, t = ts, d: string | null = id) => ({ "x-mlflow-delivery-id": d ?? undefined, "x-mlflow-timestamp": t, ...(sig !== undefined ? { "x-mlflow-signature": sig } : {}) });
    const verify = (h: Record<string, string | undefined>, b: Buffer<ArrayBufferLike> = body, now = Number(ts)) => verifyDelivery({ secret, headers: h, body: b, nowSeconds: now, toleranceSeconds: 300 });

    it("signs like mlflow/webhooks/delivery.py: v1,base64(HMAC-SHA256(secret, id.timestamp.payload))", () => {
        const expected = createHmac("sha256", secret).update(`${id}.${ts}.${body.toString()}`).digest("base64");
        assert.equal(signDelivery(secret, id, ts, body), `v1,${expected}`);
    });
    it("matches a signature recorded from MLflow 3.17.2", () => {
        // Captured from a real delivery: secret "s3cr3t", MLflow's exact body bytes.
        const recorded = '{"entity": "model_version_alias", "action": "created", "timestamp": "2026-11-24T21:03:25.088326+00:00", "data": {"name": "wine", "alias": "champion", "version": "2"}}';
        assert.equal(signDelivery("s3cr3t", id, ts, recorded), "v1,+qm5WPstPuUolzZHdpjLLmLBPP6nryvBH6JWq3ONsXQ=");
    });
    const table: [string, Record<string, string | undefined>, Buffer<ArrayBufferLike> | undefined, number | undefined, boolean, RegExp?][] = [
        ["a genuine delivery", headers(signDelivery(secret, id, ts, body)), undefined, undefined, true],
        ["one of several signatures matching", headers(`v1,AAAA v1,${signDelivery(secret, id, ts, body).slice(3)}`), undefined, undefined, true],
        ["a wrong secret", headers(signDelivery("other", id, ts, body)), undefined, undefined, false, /mismatch/],
        ["a modified body", headers(signDelivery(secret, id, ts, body)), Buffer.from(body.toString().replace('"2"', '"1"')), undefined, false, /mismatch/],
        ["a modified delivery id", headers(signDelivery(secret, id, ts, body), ts, "other-id"), undefined, undefined, false, /mismatch/],
        ["no signature", headers(undefined), undefined, undefined, false, /missing/],
        ["no delivery id", headers(signDelivery(secret, id, ts, body), ts, null), undefined, undefined, false, /missing/],
        ["an unknown signature version", headers(`v2,${signDelivery(secret, id, ts, body).slice(3)}`), undefined, undefined, false, /mismatch/],
        ["garbage signature", headers("v1,!!!"), undefined, undefined, false, /mismatch/],
        ["a timestamp 301 s old", headers(signDelivery(secret, id, ts, body)), undefined, Number(ts) + 301, false, /window/],
        ["a timestamp 301 s ahead", headers(signDelivery(secret, id, ts, body)), undefined, Number(ts) - 301, false, /window/],
        ["a timestamp that is not a number", headers(signDelivery(secret, id, "soon", body), "soon"), undefined, undefined, false, /unix seconds/],
    ];
    for (const [name, h, b, now, ok, reason] of table) {
        it(`${ok ? "accepts" : "refuses"} ${name}`, () => {
            const v = verify(h, b, now);
            assert.equal(v.ok, ok);
            if (!v.ok && reason) assert.match(v.reason, reason);
        });
    }
    it("refuses everything without a configured secret", () => {
        assert.equal(verifyDelivery({ secret: "", headers: headers(signDelivery("", id, ts, body)), body, nowSeconds: Number(ts), toleranceSeconds: 300 }).ok, false);
    });
    it("parses alias created/deleted events and passes on other events", () => {
        assert.deepEqual(parseDelivery(body), { kind: "alias", event: { action: "created", name: "wine", alias: "champion", version: "2" } });
        assert.deepEqual(parseDelivery(Buffer.from('{"entity":"model_version_alias","action":"deleted","data":{"name":"wine","alias":"champion"}}')), {
            kind: "alias",
            event: { action: "deleted", name: "wine", alias: "champion" },
        });
        assert.deepEqual(parseDelivery(Buffer.from('{"entity":"model_version","action":"created","data":{}}')), { kind: "other", entity: "model_version", action: "created" });
        assert.throws(() => parseDelivery(Buffer.from("nope")), /not JSON/);
        assert.throws(() => parseDelivery(Buffer.from('{"entity":"model_version_alias","action":"created","data":{}}')), /data.name/);
    });
    it("accepts a delivery id once per window, and forgets after it", () => {
        const log = new DeliveryLog(600, 3);
        assert.equal(log.firstSeen("a", 1000), true);
        assert.equal(log.firstSeen("a", 1001), false);
        assert.equal(log.firstSeen("a", 1700), true, "forgotten after the window");
        for (const id2 of ["b", "c", "d", "e"]) log.firstSeen(id2, 1700);
        assert.equal(log.firstSeen("a", 1700), true, "bounded: the oldest ids are dropped first");
    });
});

describe("controller: config", () => {
    const minimal = {
        mlflow: { trackingUri: "http://mlflow-tracking.mlflow.svc:5000", artifactsDestination: "s3://mlflow" },
        models: [{ registeredModel: "wine-quality", target: { kind: "InferenceService", namespace: "mlflow", name: "wine" } }],
    };
    it("fills in the defaults", () => {
        const c = parseConfig(minimal);
        assert.equal(c.pollIntervalSeconds, 30);
        assert.deepEqual(c.backoff, { initialMs: 1000, maxMs: 60000 });
        assert.deepEqual(c.http, { host: "0.0.0.0", webhookPort: 8080, metricsPort: 9090 });
        assert.equal(c.webhook, undefined, "no receiver unless configured");
        assert.deepEqual(c.models[0], { key: "wine", registeredModel: "wine-quality", alias: "champion", target: minimal.models[0].target });
        assert.equal(c.kubernetes.insecureSkipTlsVerify, false);
    });
    const bad: [string, unknown, RegExp][] = [
        ["no models", { ...minimal, models: [] }, /models must be a non-empty array/],
        ["an unknown field", { ...minimal, pollInterval: 3 }, /unknown field\(s\) pollInterval/],
        ["a tracking URI with credentials", { ...minimal, mlflow: { ...minimal.mlflow, trackingUri: "http://u:p@h:5000" } }, /must not carry credentials/],
        ["a non-s3 artifacts destination", { ...minimal, mlflow: { ...minimal.mlflow, artifactsDestination: "file:///tmp" } }, /s3:\/\/<bucket>/],
        ["a username file without a password file", { ...minimal, mlflow: { ...minimal.mlflow, usernameFile: "/u" } }, /go together/],
        ["alias latest", { ...minimal, models: [{ ...minimal.models[0], alias: "latest" }] }, /not a valid MLflow alias/],
        ["the same target twice", { ...minimal, models: [minimal.models[0], { ...minimal.models[0], key: "other" }] }, /followed twice/],
        ["the same key twice", { ...minimal, models: [minimal.models[0], { ...minimal.models[0], target: { ...minimal.models[0].target, name: "red" }, key: "wine" }] }, /used twice/],
        ["an unknown target kind", { ...minimal, models: [{ registeredModel: "m", target: { kind: "Pod" } }] }, /kind must be/],
        ["a Deployment target (image mode is not followed)", { ...minimal, models: [{ registeredModel: "m", target: { kind: "Deployment", namespace: "n", name: "d" } }] }, /kind must be "InferenceService" or "Command"/],
        ["a poll interval of 0", { ...minimal, pollIntervalSeconds: 0 }, /pollIntervalSeconds must be an integer 1–86400/],
        ["backoff max below initial", { ...minimal, backoff: { initialMs: 5000, maxMs: 1000 } }, /maxMs must be ≥/],
        ["a webhook without a secret file", { ...minimal, webhook: { path: "/hook" } }, /webhook.secretFile/],
        ["a bad log level", { ...minimal, logLevel: "trace" }, /logLevel/],
    ];
    for (const [name, raw, re] of bad) it(`refuses ${name}`, () => assert.throws(() => parseConfig(raw), re));
    it("accepts the documented local example (Command target)", () => {
        const c = parseConfig(JSON.parse(readFileSync(path.join(FIXTURES, "controller", "local.example.json"), "utf8")));
        assert.equal(c.models[0].target.kind, "Command");
        assert.equal(c.webhook?.register?.url, "http://127.0.0.1:8088/webhooks/mlflow");
    });
});

describe("controller: metrics and logs", () => {
    it("renders Prometheus text with HELP, TYPE, sorted and escaped labels", () => {
        const r = new Registry();
        const c = r.counter("things_total", "Things.");
        c.inc({ model: 'a"b', result: "ok" });
        c.inc({ result: "ok", model: 'a"b' }, 2);
        const g = r.gauge("age_seconds", "Age.");
        g.set({ model: "x" }, () => 1.5);
        g.set({ model: "y" }, () => undefined);
        assert.equal(
            r.render(),
            [
                "# HELP mlflow_deploy_controller_things_total Things.",
                "# TYPE mlflow_deploy_controller_things_total counter",
                'mlflow_deploy_controller_things_total{model="a\\"b",result="ok"} 3',
                "# HELP mlflow_deploy_controller_age_seconds Age.",
                "# TYPE mlflow_deploy_controller_age_seconds gauge",
                'mlflow_deploy_controller_age_seconds{model="x"} 1.5',
                "",
            ].join("\n"),
        );
    });
    it("writes one JSON object per line with time, level and message", () => {
        const lines: string[] = [];
        const log = createLogger("info", (l) => lines.push(l)).child({ model: "wine" });
        log.debug("hidden");
        log.warn("careful", { error: new Error("boom"), nothing: undefined });
        assert.equal(lines.length, 1);
        const entry = JSON.parse(lines[0]);
        assert.equal(entry.level, "warn");
        assert.equal(entry.msg, "careful");
        assert.equal(entry.model, "wine");
        assert.equal(entry.error, "boom");
        assert.ok(!("nothing" in entry));
        assert.ok(!Number.isNaN(Date.parse(entry.time)));
    });
});

describe("controller: registry answers", () => {
    it("treats MLflow's missing-alias (400) and missing-model (404) answers as absent, nothing else", () => {
        assert.equal(isAbsent(new RegistryError("MLflow … answered 400: Registered model alias nope not found.", "http", 400, "INVALID_PARAMETER_VALUE")), true);
        assert.equal(isAbsent(new RegistryError("MLflow … answered 404: Registered Model with name=nope not found", "http", 404, "RESOURCE_DOES_NOT_EXIST")), true);
        assert.equal(isAbsent(new RegistryError("MLflow … answered 400: something else", "http", 400, "INVALID_PARAMETER_VALUE")), false);
        assert.equal(isAbsent(new RegistryError("unreachable", "unreachable")), false);
        assert.equal(isAbsent(new RegistryError("answered 503", "http", 503)), false);
        assert.equal(isAbsent(new Error("x")), false);
    });
});

// ---------------------------------------------------------------------------------------------------
// The loop, with an in-memory registry and target.

class MemoryTarget implements ServingTarget {
    readonly description = "memory";
    state: { version: string; artifact: string } | undefined;
    writes: { op: "create" | "patch"; version: string; artifact: string }[] = [];
    failWrites = 0;
    failReads = 0;
    constructor(readonly canCreate = true) {}
    artifactFor(_v: string, storageUri: string): string {
        return storageUri;
    }
    async observe(): Promise<Observed> {
        if (this.failReads > 0) {
            this.failReads -= 1;
            throw new TargetError("get: HTTP 500", "kubernetes", 500);
        }
        return this.state ? { exists: true, ...this.state } : { exists: false };
    }
    private async write(op: "create" | "patch", a: Apply) {
        if (this.failWrites > 0) {
            this.failWrites -= 1;
            throw new TargetError(`${op}: HTTP 409`, "kubernetes", 409);
        }
        this.writes.push({ op, version: a.version, artifact: a.artifact });
        this.state = { version: a.version, artifact: a.artifact };
    }
    create(a: Apply) {
        return this.write("create", a);
    }
    patch(a: Apply) {
        return this.write("patch", a);
    }
}

class MemoryRegistry {
    answer: Resolution | Error = { kind: "serve", version: "1", storageUri: S3_V1, source: "models:/m-aaa" };
    calls = 0;
    async resolve(): Promise<Resolution> {
        this.calls += 1;
        if (this.answer instanceof Error) throw this.answer;
        return this.answer;
    }
}

const until = async (cond: () => boolean, ms = 2000) => {
    const end = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > end) throw new Error("condition not met in time");
        await new Promise((r) => setTimeout(r, 5));
    }
};

describe("controller: reconcile loop", () => {
    let ctl: Controller | undefined;
    afterEach(async () => {
        await ctl?.stop(100);
        ctl = undefined;
    });
    const model = { key: "wine", registeredModel: "wine", alias: "champion", target: { kind: "Command" as const, stateFile: "/dev/null", timeoutMs: 1000 } };
    function build(target: MemoryTarget, registry: MemoryRegistry, pollIntervalMs = 20) {
        const lines: any[] = [];
        const metrics = controllerMetrics();
        ctl = new Controller({
            models: [{ model, target }],
            registry,
            pollIntervalMs,
            backoff: { initialMs: 5, maxMs: 20 },
            log: createLogger("debug", (l) => lines.push(JSON.parse(l))),
            metrics,
        });
        return { ctl, lines, metrics };
    }

    it("creates once, then only polls; one patch per alias change", async () => {
        const target = new MemoryTarget();
        const registry = new MemoryRegistry();
        const { ctl: c, metrics } = build(target, registry);
        c.start();
        await until(() => registry.calls >= 5);
        assert.deepEqual(target.writes, [{ op: "create", version: "1", artifact: S3_V1 }]);
        assert.equal(c.ready(), true);
        registry.answer = { kind: "serve", version: "2", storageUri: S3_V2, source: "models:/m-bbb" };
        const calls = registry.calls;
        await until(() => registry.calls >= calls + 5);
        assert.deepEqual(target.writes.map((w) => `${w.op}:${w.version}`), ["create:1", "patch:2"]);
        assert.equal(metrics.writes.get({ model: "wine", operation: "patch" }), 1);
        assert.equal(metrics.servedVersion.get({ model: "wine" }), 2);
        assert.ok(metrics.sinceSync.get({ model: "wine" })! < 1);
    });

    it("backs off on registry and Kubernetes failures and converges with exactly one successful write", async () => {
        const target = new MemoryTarget();
        target.state = { version: "1", artifact: S3_V1 };
        const registry = new MemoryRegistry();
        registry.answer = new RegistryError("MLflow is unreachable (ECONNREFUSED)", "unreachable");
        const { ctl: c, lines, metrics } = build(target, registry);
        c.start();
        await until(() => metrics.errors.get({ model: "wine", stage: "registry" }) >= 3);
        const delays = lines.filter((l) => l.msg === "retrying after backoff").map((l) => l.delayMs);
        assert.ok(delays.every((d) => d <= 20), `bounded: ${delays}`);
        target.failWrites = 3;
        target.failReads = 2;
        registry.answer = { kind: "serve", version: "2", storageUri: S3_V2, source: "models:/m-bbb" };
        await until(() => target.state?.version === "2");
        const calls = registry.calls;
        await until(() => registry.calls >= calls + 4);
        assert.deepEqual(target.writes, [{ op: "patch", version: "2", artifact: S3_V2 }]);
        assert.equal(metrics.errors.get({ model: "wine", stage: "kubernetes" }), 5);
        assert.ok(lines.some((l) => l.msg === "recovered"));
    });

    it("leaves serving alone when the alias disappears, warning once per situation", async () => {
        const target = new MemoryTarget();
        target.state = { version: "1", artifact: S3_V1 };
        const registry = new MemoryRegistry();
        registry.answer = { kind: "absent", reason: "wine@champion does not exist" };
        const { ctl: c, lines, metrics } = build(target, registry);
        c.start();
        await until(() => registry.calls >= 6);
        assert.deepEqual(target.writes, []);
        assert.equal(lines.filter((l) => l.level === "warn").length, 1, "one warning, not one per poll");
        assert.equal(metrics.aliasMissing.get({ model: "wine" }), 1);
        assert.equal(metrics.reconciles.get({ model: "wine", result: "error" }), 0, "a missing alias is not an error");
    });

    it("runs another pass right after a webhook trigger, never two at once", async () => {
        const target = new MemoryTarget();
        const registry = new MemoryRegistry();
        let inFlight = 0;
        let maxInFlight = 0;
        const slow = registry.resolve.bind(registry);
        registry.resolve = async () => {
            inFlight += 1;
            maxInFlight = Math.max(maxInFlight, inFlight);
            await new Promise((r) => setTimeout(r, 20));
            inFlight -= 1;
            return slow();
        };
        const { ctl: c } = build(target, registry, 60000);
        c.start();
        await until(() => registry.calls === 1 && c.ready());
        for (let i = 0; i < 5; i++) c.trigger("wine", "webhook");
        await until(() => registry.calls >= 2);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(maxInFlight, 1);
        assert.ok(registry.calls <= 3, `triggers coalesce: ${registry.calls} passes`);
        assert.deepEqual(c.modelsFollowing("wine", "champion"), ["wine"]);
        assert.deepEqual(c.modelsFollowing("wine", "challenger"), []);
    });

    it("stops scheduling on stop() and reports not ready", async () => {
        const target = new MemoryTarget();
        const registry = new MemoryRegistry();
        const { ctl: c } = build(target, registry);
        c.start();
        await until(() => c.ready());
        assert.equal(await c.stop(500), true);
        const calls = registry.calls;
        await new Promise((r) => setTimeout(r, 80));
        assert.equal(registry.calls, calls);
        assert.equal(c.ready(), false);
        assert.equal(c.healthy(1000), true);
    });
});
