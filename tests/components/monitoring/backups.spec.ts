// The backup alerts (components/monitoring/alerts.ts backupRules): one MlflowBackupFailed and one
// MlflowBackupMissing per backup CronJob the stack runs, scoped to its namespace and the CronJob's name,
// the missing threshold from its schedule; none for a backup that is off. promtool runs them in
// alerts.spec.ts (tests/fixtures/monitoring/rules.test.yaml and rules.days.test.yaml).
import assert from "assert/strict";
import { alertRules, BACKUP_MISSED_RUNS, backupMissingAfterSeconds, humanSeconds, RuleGroup } from "../../../components/monitoring/alerts";
import { installMocks, only, out, resetRegistry } from "../../harness";
import { BACKUP_WATCHES, build, FIXTURE_SCOPE, M, ruleList, THRESHOLDS } from "./fixture";

const backupRules = (groups: RuleGroup[]) => groups.find((g) => g.name === "mlflow-platform.backups")?.rules ?? [];

describe("Monitoring: backup alerts", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("alert on each backup CronJob's failed Jobs and on a stale last success, by the names the backups give", async () => {
        // The names come from the components, as index.ts passes each backup's `watch`.
        const m = await build("mon-bk", {
            backups: {
                database: { ...BACKUP_WATCHES.database, cronJobName: "db-nightly" },
                artifacts: { ...BACKUP_WATCHES.artifacts, cronJobName: "artifacts-nightly" },
            },
        });
        const sent = only(M.PrometheusRule, "mon-bk-alerts").inputs.spec.groups as RuleGroup[];
        assert.deepEqual(sent, await out(m.ruleGroups));
        const rules = backupRules(sent);
        assert.deepEqual(
            rules.map((r) => [r.alert, r.labels]),
            [
                ["MlflowBackupFailed", { severity: "warning", backup: "database" }],
                ["MlflowBackupMissing", { severity: "critical", backup: "database" }],
                ["MlflowBackupFailed", { severity: "warning", backup: "artifacts" }],
                ["MlflowBackupMissing", { severity: "critical", backup: "artifacts" }],
            ],
        );
        const [dbFailed, dbMissing, artFailed, artMissing] = rules;

        // Failed: the namespace's Jobs with failed pods, joined to the CronJob that owns them, newer than its last success.
        assert.equal(
            dbFailed.expr,
            '(max by (namespace, job_name) (kube_job_created{namespace="ml"}) and on (namespace, job_name) max by (namespace, job_name) (kube_job_status_failed{namespace="ml"}) > 0)' +
                ' * on (namespace, job_name) group_left (cronjob)' +
                ' max by (namespace, job_name, cronjob) (label_replace(kube_job_owner{namespace="ml",owner_kind="CronJob",owner_name="db-nightly"}, "cronjob", "$1", "owner_name", "(.+)"))' +
                ' > on (namespace, cronjob) group_left ()' +
                ' (max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{namespace="ml",cronjob="db-nightly"})' +
                ' or max by (namespace, cronjob) (kube_cronjob_created{namespace="ml",cronjob="db-nightly"}))',
        );
        assert.equal(artFailed.expr, dbFailed.expr.replaceAll('"db-nightly"', '"artifacts-nightly"'), "the same rule, for the other CronJob");

        // Missing: seconds since the last success (or the CronJob's creation), over two intervals plus a run's deadlines.
        assert.equal(
            dbMissing.expr,
            'time() - (max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{namespace="ml",cronjob="db-nightly"})' +
                ' or max by (namespace, cronjob) (kube_cronjob_created{namespace="ml",cronjob="db-nightly"})) > 177000',
        );
        assert.equal(177000, 2 * 86400 + 600 + 3600, "daily, 10 m to start, 1 h to run");
        assert.match(artMissing.expr, /cronjob="artifacts-nightly"\}\)\) > 195000$/, "6 h to run");
        assert.match(dbMissing.annotations.description, /its schedule allows 2d 1h 10m \(2 × 1d between runs \+ 1h 10m to start and finish one\)/);
        for (const r of rules) {
            assert.ok(!/mlflow-(database|artifact)-backup/.test(JSON.stringify(r)), `${r.alert}: no CronJob name but the one the component gave`);
            assert.match(r.annotations.runbook, /kubectl -n ml /);
        }
    });

    it("derive the missing threshold from each backup's own schedule and deadlines", () => {
        const weekly = { what: "database" as const, cronJob: "db", intervalSeconds: 7 * 86400, runSeconds: 4200 };
        assert.equal(BACKUP_MISSED_RUNS, 2);
        assert.equal(backupMissingAfterSeconds(weekly), 2 * 7 * 86400 + 4200);
        const [, missing] = backupRules(alertRules({ ...FIXTURE_SCOPE, backups: [weekly] }, THRESHOLDS));
        assert.match(missing.expr, / > 1213800$/);
        assert.match(missing.annotations.description, /allows 14d 1h 10m \(2 × 7d between runs/);
        assert.equal(humanSeconds(195000), "2d 6h 10m");
        assert.equal(humanSeconds(90), "1m 30s");
        assert.equal(humanSeconds(0), "0s");
    });

    it("render no rule for a backup that is off, and no backup group when both are", async () => {
        const dbOnly = await build("mon-bk-db", { backups: { database: BACKUP_WATCHES.database } });
        const rules = backupRules(await out(dbOnly.ruleGroups));
        assert.deepEqual(
            rules.map((r) => `${r.alert} ${r.labels.backup}`),
            ["MlflowBackupFailed database", "MlflowBackupMissing database"],
        );
        assert.ok(rules.every((r) => !r.expr.includes("mlflow-artifact-backup")));

        const none = await build("mon-bk-none", { backups: {} });
        const groups = await out(none.ruleGroups);
        assert.deepEqual(
            groups.map((g) => g.name),
            ["mlflow-platform.tracking", "mlflow-platform.storage", "mlflow-platform.model-serving"],
        );
        assert.ok(!ruleList(groups).some((r) => /Backup/.test(r.alert) || /kube_job_|kube_cronjob_/.test(r.expr)));
        assert.deepEqual(only(M.PrometheusRule, "mon-bk-none-alerts").inputs.spec.groups, groups);
    });
});
