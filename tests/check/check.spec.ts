// `npm run check`: waiver parsing and matching, each checker's output parser (on outputs captured from
// the tools), the offline schema generation, and the real checkers on a deliberately bad manifest.
import assert from "assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse } from "yaml";
import {
    CheckerRun, Finding, findWaiver, installTools, judge, parseCheckov, parseKubeconform, parseKubeLinter, parseKubeScore,
    parseWaivers, runCheckers, splitRow, Tools, Waiver,
} from "../../scripts/lib/checkers";
import { writeManifests } from "../../scripts/lib/manifests";
import { kindFileName, standaloneSchema, strictCrdSchema } from "../../scripts/lib/checkersSchemas";

import { ROOT } from "../harness";
const FIXTURES = path.join(ROOT, "tests", "fixtures", "check");
const output = (name: string) => fs.readFileSync(path.join(FIXTURES, "outputs", name), "utf8");

const HEADER = "| checker | check id | object | reason | why the alternative is worse |\n| --- | --- | --- | --- | --- |\n";
const finding = (checker: Finding["checker"], check: string, object: string): Finding => ({ checker, check, object, message: "m" });

describe("npm run check: waivers", () => {
    it("parses the table: cells trimmed, backticks removed, escaped pipes kept, rows until the table ends", () => {
        const md = "# Waivers\n\nSome text.\n\n" + HEADER +
            "| checkov | `CKV_K8S_43` | `*` | digests are pinned at release | a tag \\| digest mix-up |\n" +
            "| kube-score | deployment-replicas | Deployment/mlflow-server | dev runs one replica | two pods double the cost |\n" +
            "\n| checkov | CKV_K8S_1 | * | after the table | ignored |\n";
        const w = parseWaivers(md);
        assert.equal(w.length, 2);
        assert.deepEqual({ ...w[0] }, {
            checker: "checkov", check: "CKV_K8S_43", object: "*", reason: "digests are pinned at release",
            why: "a tag | digest mix-up", line: 7,
        });
        assert.equal(w[1].object, "Deployment/mlflow-server");
    });

    it("splits rows with or without outer pipes", () => {
        assert.deepEqual(splitRow("| a | b |"), ["a", "b"]);
        assert.deepEqual(splitRow("a | b"), ["a", "b"]);
        assert.deepEqual(splitRow("| a \\| b | c |"), ["a | b", "c"]);
    });

    it("accepts an empty table and the header in any case", () => {
        assert.deepEqual(parseWaivers(HEADER.replace("checker", "Checker").replace("check id", "Check ID")), []);
    });

    it("rejects what would silently waive nothing or everything", () => {
        assert.throws(() => parseWaivers("no table here"), /no table with the columns checker \| check id/);
        assert.throws(() => parseWaivers(HEADER + "| polaris | x | * | r | w |\n"), /WAIVERS.md:3: unknown checker "polaris"/);
        assert.throws(() => parseWaivers(HEADER + "| checkov | CKV_K8S_43 | * |  | w |\n"), /needs a reason/);
        assert.throws(() => parseWaivers(HEADER + "| checkov | CKV_K8S_43 | * | r |  |\n"), /needs a reason and why/);
        assert.throws(() => parseWaivers(HEADER + "| checkov | CKV_K8S_43 | * | r |\n"), /expected 5 cells, found 4/);
        assert.throws(() => parseWaivers(HEADER + "| checkov | CKV_K8S_43 | mlflow-server | r | w |\n"), /object must be Kind\/name or \*/);
        assert.throws(() => parseWaivers(HEADER + "| checkov |  | * | r | w |\n"), /empty check id/);
    });

    it("matches on checker, check id (any case) and object (exact, glob or *)", () => {
        const waivers = parseWaivers(HEADER +
            "| checkov | ckv_k8s_43 | * | r | w |\n" +
            "| kube-score | container-image-pull-policy | Job/* | r | w |\n" +
            "| kube-score | deployment-replicas | Deployment/mlflow-server | r | w |\n");
        assert.equal(findWaiver(finding("checkov", "CKV_K8S_43", "StatefulSet/mlflow-postgres"), waivers)?.line, 3);
        assert.equal(findWaiver(finding("checkov", "CKV_K8S_15", "StatefulSet/mlflow-postgres"), waivers), undefined);
        assert.equal(findWaiver(finding("kube-linter", "CKV_K8S_43", "StatefulSet/mlflow-postgres"), waivers), undefined, "other checker");
        assert.equal(findWaiver(finding("kube-score", "container-image-pull-policy", "Job/mlflow-migrate"), waivers)?.line, 4);
        assert.equal(findWaiver(finding("kube-score", "container-image-pull-policy", "CronJob/mlflow-backup"), waivers), undefined);
        assert.equal(findWaiver(finding("kube-score", "deployment-replicas", "Deployment/mlflow-server"), waivers)?.line, 5);
        assert.equal(findWaiver(finding("kube-score", "deployment-replicas", "Deployment/mlflow-server-2"), waivers), undefined);
        const dotted = parseWaivers(HEADER + "| kube-score | deployment-replicas | Deployment/mlflow.server | r | w |\n");
        assert.ok(findWaiver(finding("kube-score", "deployment-replicas", "Deployment/mlflow.server"), dotted));
        assert.equal(findWaiver(finding("kube-score", "deployment-replicas", "Deployment/mlflowXserver"), dotted), undefined, "a dot is literal");
    });

    it("limits a waiver to the stacks named after @", () => {
        const waivers = parseWaivers(HEADER + "| kube-score | deployment-replicas | Deployment/mlflow-server@dev,test | r | w |\n");
        assert.deepEqual(waivers[0].stacks, ["dev", "test"]);
        assert.equal(waivers[0].object, "Deployment/mlflow-server");
        const f = finding("kube-score", "deployment-replicas", "Deployment/mlflow-server");
        assert.ok(findWaiver(f, waivers, "dev"));
        assert.equal(findWaiver(f, waivers, "prod"), undefined, "a dev waiver never hides a prod finding");
        assert.equal(findWaiver(f, waivers), undefined);
        assert.deepEqual(judge([{ checker: "kube-score", version: "v", checksRun: "1", findings: [] }], waivers, "prod").unusedWaivers, [],
            "a waiver for other stacks is not unused in this one");
        assert.throws(() => parseWaivers(HEADER + "| kube-score | x | Deployment/a@ | r | w |\n"), /stacks after @/);
    });

    it("the repository's WAIVERS.md parses, and every waiver has a real reason", () => {
        const waivers = parseWaivers(fs.readFileSync(path.join(ROOT, "WAIVERS.md"), "utf8"));
        assert.ok(waivers.length > 0, "WAIVERS.md lists no waiver");
        for (const w of waivers) {
            assert.ok(w.reason.length >= 20 && w.why.length >= 20, `WAIVERS.md:${w.line}: reason and alternative need a sentence each`);
        }
    });

    it(".kube-linter.yaml enables every built-in check, excluding only the online schema-validation kubeconform replaces", () => {
        const config = parse(fs.readFileSync(path.join(ROOT, ".kube-linter.yaml"), "utf8"));
        assert.deepEqual(config.checks, { addAllBuiltIn: true, exclude: ["schema-validation"] });
    });
});

describe("npm run check: parsing each checker's output", () => {
    it("kubeconform: one finding per invalid object, the schema error as message", () => {
        const { findings, objects } = parseKubeconform(output("kubeconform.json"));
        assert.equal(objects, 2);
        assert.deepEqual(findings.map((f) => [f.checker, f.check, f.object]).sort(), [
            ["kubeconform", "schema", "Deployment/bad"],
            ["kubeconform", "schema", "ServiceMonitor/bad-monitor"],
        ]);
        const d = findings.find((f) => f.object === "Deployment/bad")!;
        assert.match(d.message, /^at '\/spec\/template\/spec\/containers\/0': additional properties 'unknownField' not allowed/);
        assert.match(findings.find((f) => f.object === "ServiceMonitor/bad-monitor")!.message, /'scrapeEvery' not allowed/);
    });

    it("kubeconform: a kind without a schema is a finding, not a pass", () => {
        const stdout = JSON.stringify({
            resources: [{ filename: "a.yaml", kind: "Widget", name: "w", version: "example.com/v1", status: "statusError", msg: "could not find schema for Widget" }],
            summary: { valid: 3, invalid: 0, errors: 1, skipped: 0 },
        });
        const { findings, objects } = parseKubeconform(stdout);
        assert.equal(objects, 4);
        assert.deepEqual(findings, [{ checker: "kubeconform", check: "schema-missing", object: "Widget/w", message: "could not find schema for Widget" }]);
    });

    it("kube-score: warnings and criticals per container; OK and skipped checks are not findings", () => {
        const { findings, checks } = parseKubeScore(output("kube-score.json"));
        const ids = new Set(findings.map((f) => f.check));
        for (const id of ["container-security-context-privileged", "container-image-tag", "container-resources",
            "container-seccomp-profile", "pod-networkpolicy", "container-ephemeral-storage-request-and-limit"]) {
            assert.ok(ids.has(id), `missing ${id} in ${[...ids].join(", ")}`);
        }
        assert.ok(!ids.has("stable-version"), "passed checks are not findings");
        assert.ok(!ids.has("deployment-has-poddisruptionbudget"), "checks skipped for 1 replica are not findings");
        assert.ok(findings.every((f) => f.object === "Deployment/bad" && f.checker === "kube-score"));
        assert.ok(findings.some((f) => f.message === "[CRITICAL] app: The container is privileged"), findings.map((f) => f.message).join("\n"));
        assert.ok(checks.includes("container-seccomp-profile"), "an enabled optional check counts as run");
        assert.ok(!checks.includes("container-memory-requests-equal-limits"), "an optional check left off is not run");
    });

    it("kube-linter: Reports become findings, Checks are what ran", () => {
        const { findings, checks, version } = parseKubeLinter(output("kube-linter.json"));
        assert.equal(version, "v0.8.3");
        assert.deepEqual(checks, ["latest-tag", "no-read-only-root-fs", "privileged-container"]);
        assert.deepEqual(findings.map((f) => [f.check, f.object]), [
            ["latest-tag", "Deployment/bad"], ["privileged-container", "Deployment/bad"], ["no-read-only-root-fs", "Deployment/bad"],
        ]);
        assert.match(findings[1].message, /^container "app" is privileged \(Do not run your container as privileged/);
        assert.deepEqual(parseKubeLinter(output("kube-linter-clean.json")).findings, [], "Reports: null when clean");
    });

    it("checkov: failed checks mapped to the object of their file; passed ones count as run", () => {
        const file = path.join(FIXTURES, "bad", "deployment-bad.yaml");
        const raw = JSON.parse(output("checkov.json"));
        const { findings, checks } = parseCheckov(output("checkov.json"), (f) => (f === file || f.endsWith("/deployment-bad.yaml") ? "Deployment/bad" : undefined));
        assert.equal(findings.length, raw.summary.failed);
        const ids = findings.map((f) => f.check);
        for (const id of ["CKV_K8S_16", "CKV_K8S_14", "CKV_K8S_43", "CKV2_K8S_6"]) assert.ok(ids.includes(id), `missing ${id}`);
        assert.ok(findings.every((f) => f.object === "Deployment/bad"), "graph checks on synthetic Pods map back to the file's object");
        assert.equal(findings.find((f) => f.check === "CKV_K8S_16")!.message, "Container should not be privileged");
        assert.ok(checks.length > 60 && checks.includes("CKV_K8S_20"), `checks run: ${checks.length}`);
    });

    it("checkov: without a file index, the object comes from Kind.namespace.name", () => {
        const { findings } = parseCheckov(output("checkov.json"));
        assert.equal(findings.find((f) => f.check === "CKV_K8S_16")!.object, "Deployment/bad");
    });
});

describe("npm run check: verdict", () => {
    const run = (checker: CheckerRun["checker"], findings: Finding[], notRun?: string): CheckerRun =>
        ({ checker, version: "v1", checksRun: "3", findings, notRun });

    it("counts findings, waived and unwaived per checker in one table; lists unused waivers", () => {
        const waivers: Waiver[] = parseWaivers(HEADER +
            "| checkov | CKV_K8S_43 | * | digests pinned at release time | r |\n" +
            "| kube-score | pod-probes | Job/* | jobs need no probes at all here | w |\n" +
            "| kube-linter | latest-tag | * | not run here, so never matches | w |\n");
        const v = judge([
            run("kubeconform", []),
            run("kube-score", [finding("kube-score", "pod-probes", "Deployment/x")]),
            run("kube-linter", [], "not installed: refused"),
            run("checkov", [finding("checkov", "CKV_K8S_43", "Deployment/x"), finding("checkov", "CKV_K8S_43", "Job/y")]),
        ], waivers);
        assert.deepEqual(v.unwaived.map((f) => `${f.checker} ${f.check} ${f.object}`), ["kube-score pod-probes Deployment/x"]);
        assert.equal(v.waived.length, 2);
        assert.deepEqual(v.notRun.map((r) => r.checker), ["kube-linter"]);
        assert.deepEqual(v.unusedWaivers.map((w) => w.check), ["pod-probes"], "waivers of a checker that did not run are not reported as unused");
        const lines = v.table.split("\n");
        assert.match(lines[0], /^\| checker +\| version +\| checks run +\| findings +\| waived +\| unwaived +\|$/);
        assert.match(v.table, /\| checkov +\| v1 +\| 3 +\| 2 +\| 2 +\| 0 +\|/);
        assert.match(v.table, /\| kube-linter +\| v1 +\| NOT RUN \(see below\) +\| - +\| - +\| - +\|/);
    });

    it("writes YAML that YAML 1.1 parsers read back as the same strings", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "check-spec-yaml-"));
        try {
            const index = writeManifests([{ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c" }, data: { a: "off", b: "yes", c: "0755" } }], dir);
            const file = path.join(dir, "configmap-c.yaml");
            assert.equal(index.get(file), "ConfigMap/c");
            const text = fs.readFileSync(file, "utf8");
            assert.match(text, /a: "off"/);
            assert.deepEqual(parse(text, { version: "1.1" }).data, { a: "off", b: "yes", c: "0755" });
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("npm run check: offline schemas", () => {
    it("names schema files the way kubeconform looks them up", () => {
        assert.equal(kindFileName("apps", "v1", "Deployment"), "deployment-apps-v1.json");
        assert.equal(kindFileName("", "v1", "Service"), "service-v1.json");
        assert.equal(kindFileName("networking.k8s.io", "v1", "NetworkPolicy"), "networkpolicy-networking-v1.json");
    });

    it("makes a kind schema standalone: only the definitions it reaches, refs made local", () => {
        const defs = {
            A: { type: "object", properties: { b: { $ref: "#/$defs/B" } }, additionalProperties: false },
            B: { type: "string" },
            Unused: { type: "integer" },
        };
        const kind = { $id: "https://kubernetes.io/api/x", type: "object", properties: { a: { $ref: "/api/_definitions.json#/$defs/A" } } };
        assert.deepEqual(standaloneSchema(kind, defs), {
            type: "object",
            properties: { a: { $ref: "#/$defs/A" } },
            $defs: { A: { type: "object", properties: { b: { $ref: "#/$defs/B" } }, additionalProperties: false }, B: { type: "string" } },
        });
    });

    it("makes CRD schemas strict except where unknown fields are preserved", () => {
        const s = strictCrdSchema({
            type: "object",
            properties: {
                spec: { type: "object", properties: { properties: { type: "string" }, port: { type: "string", nullable: true } } },
                free: { type: "object", "x-kubernetes-preserve-unknown-fields": true, properties: { a: { type: "string" } } },
                labels: { type: "object", additionalProperties: { type: "string" } },
            },
        });
        assert.equal(s.additionalProperties, false);
        assert.equal(s.properties.spec.additionalProperties, false);
        assert.deepEqual(s.properties.spec.properties.properties, { type: "string" }, "a field named `properties` is a field");
        assert.deepEqual(s.properties.spec.properties.port.type, ["string", "null"]);
        assert.equal(s.properties.free.additionalProperties, undefined);
        assert.deepEqual(s.properties.labels.additionalProperties, { type: "string" });
    });
});

describe("npm run check: the real checkers on a deliberately bad manifest", function () {
    // First run on a fresh machine installs the tools (Go builds, a checkov venv): minutes, not seconds.
    this.timeout(20 * 60 * 1000);
    let tools: Tools;
    let runs: CheckerRun[];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "check-spec-bad-"));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    before(async () => {
        tools = installTools();
        for (const sub of ["bad", "crd"]) {
            for (const f of fs.readdirSync(path.join(FIXTURES, sub))) fs.copyFileSync(path.join(FIXTURES, sub, f), path.join(dir, f));
        }
        const index = new Map([
            [path.join(dir, "deployment-bad.yaml"), "Deployment/bad"],
            [path.join(dir, "servicemonitor-bad.yaml"), "ServiceMonitor/bad-monitor"],
        ]);
        runs = await runCheckers(dir, tools, index);
    });

    const ran = (checker: CheckerRun["checker"], ctx: Mocha.Context): CheckerRun => {
        const r = runs.find((x) => x.checker === checker)!;
        if (r.notRun && tools.missing[checker]) {
            // A tool this machine cannot install: say so instead of passing silently.
            console.log(`      (${checker} not installable here: ${tools.missing[checker]})`);
            ctx.skip();
        }
        assert.equal(r.notRun, undefined, `${checker} did not run: ${r.notRun}`);
        return r;
    };
    const checks = (r: CheckerRun) => r.findings.filter((f) => f.object === "Deployment/bad").map((f) => f.check);

    it("kubeconform rejects the unknown field, and the unknown CRD field via the offline CRD schema", function () {
        const r = ran("kubeconform", this);
        assert.deepEqual(r.findings.map((f) => `${f.check} ${f.object}`).sort(), ["schema Deployment/bad", "schema ServiceMonitor/bad-monitor"]);
        assert.equal(r.checksRun, "2 objects");
    });

    it("kube-score flags the privileged container and the latest tag", function () {
        const r = ran("kube-score", this);
        assert.ok(checks(r).includes("container-security-context-privileged"), checks(r).join(", "));
        assert.ok(checks(r).includes("container-image-tag"));
    });

    it("kube-linter flags the privileged container and the latest tag", function () {
        const r = ran("kube-linter", this);
        assert.ok(checks(r).includes("privileged-container"), checks(r).join(", "));
        assert.ok(checks(r).includes("latest-tag"));
    });

    it("checkov flags the privileged container and the latest tag", function () {
        const r = ran("checkov", this);
        assert.ok(checks(r).includes("CKV_K8S_16"), checks(r).join(", "));
        assert.ok(checks(r).includes("CKV_K8S_14"));
    });
});
