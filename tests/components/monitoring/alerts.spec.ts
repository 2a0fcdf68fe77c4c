// The platform's alerts (components/monitoring/alerts.ts): scoped, made of metric names the exporters
// really emit, and run through promtool against recorded series.
import assert from "assert/strict";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { durationSeconds } from "../../../components/fields";
import { Monitoring } from "../../../components/monitoring";
import { alertRules, METRIC_SOURCES, RuleGroup, selectorsFor } from "../../../components/monitoring/alerts";
import { platformDashboard } from "../../../components/monitoring/dashboard";
import { installMocks, only, out, resetRegistry, ROOT, settle } from "../../harness";
import { build, exposition, FIXTURE_SCOPE, fixture, labelNames, M, metricNames, MONITORING, ruleList, TARGET_LABELS, THRESHOLDS } from "./fixture";

describe("Monitoring: alert rules", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    describe("alert rules", () => {
        it("carry a severity, a `for`, summary, description and runbook hint, scoped to this platform", async () => {
            const m = await build("mon-rules", { config: { runbookBaseUrl: "https://runbooks.example.com/mlflow" } });
            const sent = only(M.PrometheusRule, "mon-rules-alerts").inputs.spec.groups as RuleGroup[];
            assert.deepEqual(sent, await out(m.ruleGroups));
            const rules = ruleList(sent);
            assert.deepEqual(rules.map((r) => r.alert).sort(), [
                "MlflowBackupFailed",
                "MlflowBackupFailed",
                "MlflowBackupMissing",
                "MlflowBackupMissing",
                "MlflowPostgresDown",
                "MlflowTrackingDown",
                "MlflowTrackingHighErrorRatio",
                "MlflowTrackingHighLatency",
                "MlflowTrackingTargetDown",
                "MlflowVolumeNearlyFull",
                "ModelServerHighErrorRatio",
                "ModelServerTargetDown",
            ]);
            for (const r of rules) {
                assert.match(r.labels.severity, /^(critical|warning)$/, r.alert);
                assert.ok(durationSeconds(r.for) >= 5 * 60, `${r.alert}: for ${r.for}`);
                for (const a of ["summary", "description", "runbook"]) assert.ok(r.annotations[a]?.length > 20, `${r.alert}: ${a}`);
                assert.equal(r.annotations.runbook_url, `https://runbooks.example.com/mlflow#${r.alert.toLowerCase()}`);
                // Every selector is pinned to our namespace and job, StatefulSet, PVCs or backup CronJob, or to
                // our PodMonitor's job. A Job's series (kube_job_*) are pinned to the namespace and joined to
                // kube_job_owner of our CronJob.
                for (const sel of r.expr.match(/\{[^}]*\}/g)!) {
                    assert.ok(/namespace="ml"/.test(sel) || /job="ml\/mon-rules-model-servers"/.test(sel), `${r.alert}: unscoped selector ${sel}`);
                    const pinned = /job=|statefulset=|persistentvolumeclaim=~|cronjob=|owner_name=/.test(sel) || (sel === '{namespace="ml"}' && /owner_kind="CronJob",owner_name="mlflow-/.test(r.expr));
                    assert.ok(pinned, `${r.alert}: ${sel} needs a job, StatefulSet, PVC or CronJob matcher`);
                }
            }
        });

        it("take thresholds from the config", async () => {
            const m = await build("mon-thr", { config: { thresholds: { errorRatio: 0.2, latencyP95Seconds: 5, volumeFreeRatio: 0.25 } } });
            const byName = Object.fromEntries(ruleList(await out(m.ruleGroups)).map((r) => [r.alert, r]));
            assert.match(byName.MlflowTrackingHighErrorRatio.expr, / > 0\.2$/);
            assert.match(byName.MlflowTrackingHighErrorRatio.annotations.description, /threshold 20%/);
            assert.match(byName.MlflowTrackingHighLatency.expr, / > 5$/);
            assert.match(byName.MlflowVolumeNearlyFull.expr, / < 0\.25$/);
            assert.match(byName.ModelServerHighErrorRatio.expr, / > 0\.05$/, "unset thresholds keep their default");
        });

        it("use only metric and label names the exporters really emit (captured from MLflow 3.17.2 and MLServer 1.7.1)", () => {
            const captured = new Map([...exposition("mlflow-3.17.2.metrics.txt"), ...exposition("mlserver-1.7.1.metrics.txt")]);
            const exprs = ruleList(alertRules(FIXTURE_SCOPE, THRESHOLDS)).map((r) => r.expr);
            const dashboard = platformDashboard({ uid: "u", title: "t", selectors: selectorsFor(FIXTURE_SCOPE) }) as any;
            exprs.push(...dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((t: any) => t.expr)));
            const used = new Set(exprs.flatMap(metricNames));
            for (const name of used) assert.ok(METRIC_SOURCES[name], `${name} has no entry in METRIC_SOURCES`);
            for (const name of Object.keys(METRIC_SOURCES)) assert.ok(used.has(name), `METRIC_SOURCES lists unused ${name}`);
            // Application metrics must appear in the real exporters' output, with the labels we use.
            const appLabels = new Set<string>();
            for (const name of used) {
                if (!/^(mlflow_|model_infer_|rest_server_)/.test(name)) continue;
                assert.ok(captured.has(name), `${name} is not in the captured /metrics output`);
                captured.get(name)!.forEach((l) => appLabels.add(l));
            }
            // kube-state-metrics (StatefulSet, Job and CronJob collectors), kubelet, histogram.
            const infra = new Set(["le", "statefulset", "persistentvolumeclaim", "job_name", "owner_kind", "owner_name", "cronjob"]);
            for (const l of new Set(exprs.flatMap(labelNames))) {
                assert.ok(TARGET_LABELS.has(l) || appLabels.has(l) || infra.has(l), `label ${l} is emitted by no exporter`);
            }
            for (const l of ["status", "method", "mlflow_version", "model", "path", "status_code"]) assert.ok(appLabels.has(l), l);
            assert.ok(!captured.get("mlflow_http_request_total")!.has("path"), "MLflow's exporter has no path label (group_by is the version)");
        });
    });

    // ---------------------------------------------------------------------------------------------------
    // promtool: needs the Debian `prometheus` package (it ships promtool); the test installs it with
    // scripts/tools/ensure-apt.sh on first run (root or passwordless sudo), then it is cached by dpkg.
    // ---------------------------------------------------------------------------------------------------
    describe("promtool (Debian package `prometheus`, installed by the test)", function () {
        // rules.days.test.yaml holds the cases that take days of series, evaluated every 10 minutes.
        const TEST_FILES = ["rules.test.yaml", "rules.days.test.yaml"];
        this.timeout(600_000);
        let dir: string;
        let rulesFile: string;

        before(async function () {
            execFileSync(path.join(ROOT, "scripts/tools/ensure-apt.sh"), ["prometheus"], { stdio: ["ignore", "inherit", "inherit"] });
            dir = fs.mkdtempSync(path.join(os.tmpdir(), "mlflow-rules-"));
            // The rules exactly as the component sends them, for the scope the unit-test fixture is written for.
            resetRegistry();
            const m = new Monitoring(
                "mlflow",
                { ...fixture(), namespace: "mlflow" },
                { providers: [new k8s.Provider("promtool-k8s", {})] },
            );
            await settle(m.prometheusRule);
            const groups = only(M.PrometheusRule, "mlflow-alerts").inputs.spec.groups;
            assert.deepEqual(groups, alertRules(FIXTURE_SCOPE, THRESHOLDS), "the fixture scope must be what the component renders");
            rulesFile = path.join(dir, "rules.yaml");
            fs.writeFileSync(rulesFile, toYaml({ groups }, { lineWidth: 0 }));
            for (const f of TEST_FILES) fs.copyFileSync(path.join(MONITORING, f), path.join(dir, f));
        });

        after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

        it("`promtool check rules` accepts the rendered rule groups", () => {
            const output = execFileSync("promtool", ["check", "rules", rulesFile], { encoding: "utf8" });
            assert.match(output, /SUCCESS: 12 rules found/);
        });

        it("`promtool test rules`: every alert fires on realistic series, at the right time, and not for other apps", () => {
            // Each rule, by name and its `backup` label (a backup's two rules are one per CronJob), has a firing case.
            const key = (alert: string, labels: { backup?: string }) => (labels.backup ? `${alert} ${labels.backup}` : alert);
            const tested = new Set(
                TEST_FILES.flatMap((f) => parseYaml(fs.readFileSync(path.join(dir, f), "utf8")).tests).flatMap((t: any) =>
                    t.alert_rule_test.flatMap((a: any) => a.exp_alerts.map((e: any) => key(a.alertname, e.exp_labels))),
                ),
            );
            const all = new Set(ruleList(alertRules(FIXTURE_SCOPE, THRESHOLDS)).map((r) => key(r.alert, r.labels)));
            assert.deepEqual([...tested].sort(), [...all].sort(), "each alert has a firing case");
            try {
                execFileSync("promtool", ["test", "rules", ...TEST_FILES], { cwd: dir, encoding: "utf8", stdio: "pipe" });
            } catch (e: any) {
                assert.fail(`promtool test rules failed:\n${e.stdout}${e.stderr}`);
            }
        });

        it("`promtool test rules` catches a rule that is not scoped (the tests have teeth)", () => {
            const loose = fs.readFileSync(rulesFile, "utf8").replaceAll('namespace="mlflow",job="mlflow-tracking"', 'job="mlflow-tracking"');
            fs.writeFileSync(path.join(dir, "rules.yaml"), loose);
            try {
                let failure: any;
                try {
                    execFileSync("promtool", ["test", "rules", "rules.test.yaml"], { cwd: dir, encoding: "utf8", stdio: "pipe" });
                } catch (e) {
                    failure = e;
                }
                assert.ok(failure, "promtool test rules must fail on the unscoped rules");
                assert.equal(failure.status, 1, `${failure.message}`);
                // promtool prints the failed cases on stderr: the error-ratio alert fires for the other namespace too.
                const report = `${failure.stdout}${failure.stderr}`;
                assert.match(report, /FAILED:[\s\S]*alertname: MlflowTrackingHighErrorRatio,/, report);
                assert.match(report, /Labels:\{alertname="MlflowTrackingHighErrorRatio", job="mlflow-tracking", namespace="other", severity="critical"\}/, report);
            } finally {
                fs.writeFileSync(path.join(dir, "rules.yaml"), toYaml({ groups: alertRules(FIXTURE_SCOPE, THRESHOLDS) }, { lineWidth: 0 }));
            }
        });
    });
});
