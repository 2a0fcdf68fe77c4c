// The optional kube-prometheus-stack release (components/monitoring/stack.ts), pinned and wired to load the platform's objects.
import assert from "assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { KUBE_PROMETHEUS_STACK_REPO, KUBE_PROMETHEUS_STACK_VERSION } from "../../../components/monitoring/stack";
import { find, installMocks, isSecretValue, only, out, resetRegistry, unsecret } from "../../harness";
import { build, M } from "./fixture";

describe("Monitoring: kube-prometheus-stack", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    describe("kube-prometheus-stack (optional Helm release)", () => {
        it("is off by default", async () => {
            const m = await build("mon-nostack");
            assert.equal(m.stack, undefined);
            assert.equal(find(M.Release).length, 0);
            assert.equal(m.grafanaAdminPassword, undefined);
        });

        it("is pinned and configured to load the platform's monitors, rules and dashboard", async () => {
            const m = await build("mon-stack", { config: { installStack: true } });
            const rel = only(M.Release, "mon-stack-stack").inputs;
            assert.equal(rel.chart, "kube-prometheus-stack");
            assert.equal(rel.version, KUBE_PROMETHEUS_STACK_VERSION);
            assert.match(rel.version, /^\d+\.\d+\.\d+$/);
            assert.equal(rel.repositoryOpts.repo, KUBE_PROMETHEUS_STACK_REPO);
            assert.equal(rel.name, "kube-prometheus-stack", "Helm release name = the `release` label the chart's Prometheus selects");
            assert.equal(rel.namespace, "monitoring");
            // The Grafana admin password makes the values secret; unwrap to assert on them.
            assert.ok(isSecretValue(rel.values), "values carry the Grafana admin password and must be secret");
            const values = unsecret(rel.values);
            const spec = values.prometheus.prometheusSpec;
            for (const k of ["serviceMonitorSelector", "podMonitorSelector", "ruleSelector"]) assert.deepEqual(spec[k], { matchLabels: { release: "kube-prometheus-stack" } }, k);
            for (const k of ["serviceMonitorNamespaceSelector", "podMonitorNamespaceSelector", "ruleNamespaceSelector"]) assert.deepEqual(spec[k], {}, k);
            const sidecar = values.grafana.sidecar.dashboards;
            assert.equal(sidecar.enabled, true);
            assert.equal(sidecar.label, "grafana_dashboard");
            assert.equal(sidecar.labelValue, "1");
            assert.deepEqual(sidecar.searchNamespace, ["monitoring", "ml"]);
            assert.equal(values.grafana.adminPassword.length, 32);
            assert.equal(await pulumi.isSecret(m.grafanaAdminPassword!), true);
            // Our custom resources wait for the chart's CRDs.
            const releaseUrn = await out(m.stack!.urn);
            for (const t of [M.ServiceMonitor, M.PodMonitor, M.PrometheusRule]) assert.ok(find(t)[0].dependencies.includes(releaseUrn), `${t} must depend on the release`);
        });
    });
});
