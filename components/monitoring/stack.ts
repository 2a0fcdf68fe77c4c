// kube-prometheus-stack, when the platform installs it: the pinned chart and the values that make its
// Prometheus load the platform's monitors and rules and its Grafana the dashboard.

/** kube-prometheus-stack, the newest release found (2026-09-13); no Helm repository is reachable from CI to re-check. */
export const KUBE_PROMETHEUS_STACK_VERSION = "91.5.0";
export const KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts";

/** Values that make the chart's Prometheus load this platform's objects and Grafana its dashboard. */
export function stackValues(
    release: string,
    dashboard: { label: string; labelValue: string },
    dashboardNamespaces: string[],
    grafanaAdminPassword: string,
): Record<string, unknown> {
    const byRelease = { matchLabels: { release } };
    return {
        prometheus: {
            prometheusSpec: {
                serviceMonitorSelector: byRelease,
                podMonitorSelector: byRelease,
                ruleSelector: byRelease,
                // Objects live in the platform namespace, not the release's.
                serviceMonitorNamespaceSelector: {},
                podMonitorNamespaceSelector: {},
                ruleNamespaceSelector: {},
            },
        },
        grafana: {
            adminPassword: grafanaAdminPassword,
            sidecar: {
                dashboards: {
                    enabled: true,
                    label: dashboard.label,
                    labelValue: dashboard.labelValue,
                    // The chart's own dashboards plus the platform's.
                    searchNamespace: [...new Set(dashboardNamespaces)],
                },
            },
        },
    };
}

