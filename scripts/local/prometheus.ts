// Prometheus configured from the rendered monitoring objects, the way prometheus-operator would: one
// scrape job per ServiceMonitor/PodMonitor endpoint (targets are the local processes the selected
// Service or pods stand for, in file_sd files so model servers can come and go), the operator's target
// labels (job, namespace, service, pod, endpoint), and the PrometheusRule groups as a rule file.
import { stringify } from "yaml";
import { labelSelectorMatches as selectorMatches } from "../../policy/lib/selectors";
import type { RenderedStack } from "./stack";
import type { LocalService } from "./mapping";

/** A local stand-in for a pod that monitors may select. */
export interface LocalPod {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    /** Container port name → local port. */
    ports: Record<string, number>;
    container: string;
}

// A monitor's selector is evaluated as apimachinery does, by the policy pack's implementation.
export { selectorMatches };

/** Label name as Prometheus keeps a Kubernetes label (`serving.kserve.io/x` → `serving_kserve_io_x`). */
export const sanitizeLabel = (name: string) => name.replace(/[^a-zA-Z0-9_]/g, "_");

export interface ScrapeJob {
    job_name: string;
    scrape_interval?: string;
    scrape_timeout?: string;
    metrics_path: string;
    scheme: string;
    file_sd_configs: { files: string[] }[];
}

export interface TargetGroup {
    targets: string[];
    labels: Record<string, string>;
}

/** File name of a job's targets (file_sd), inside the targets directory. */
export const targetsFile = (jobName: string) => `${jobName.replace(/[^a-zA-Z0-9_.-]/g, "_")}.json`;

function namespacesOf(monitor: any): string[] {
    return monitor.spec.namespaceSelector?.matchNames ?? [monitor.metadata.namespace];
}

/** Scrape jobs and their current targets for every ServiceMonitor and PodMonitor of the stack. */
export function scrapeJobs(stack: RenderedStack, services: LocalService[], pods: LocalPod[], targetsDir: string) {
    const jobs: ScrapeJob[] = [];
    const targets: Record<string, TargetGroup[]> = {};
    const add = (jobName: string, ep: any, groups: TargetGroup[]) => {
        jobs.push({
            job_name: jobName,
            scrape_interval: ep.interval,
            scrape_timeout: ep.scrapeTimeout,
            metrics_path: ep.path ?? "/metrics",
            scheme: ep.scheme ?? "http",
            file_sd_configs: [{ files: [`${targetsDir}/${targetsFile(jobName)}`] }],
        });
        targets[targetsFile(jobName)] = groups;
    };
    for (const sm of stack.find("ServiceMonitor") as any[]) {
        const ns = namespacesOf(sm);
        sm.spec.endpoints.forEach((ep: any, i: number) => {
            const groups: TargetGroup[] = [];
            for (const svc of stack.find("Service", (s) => ns.includes(s.metadata.namespace!)) as any[]) {
                if (!selectorMatches(sm.spec.selector, svc.metadata.labels ?? {})) continue;
                const port = (svc.spec.ports as any[]).find((p) => p.name === ep.port);
                const local = services.find((s) => s.name === svc.metadata.name)?.ports.find((p) => p.port === port?.port);
                if (!port || !local) continue;
                const workload = stack.workloadSelectedBy(svc.spec.selector ?? {});
                // prometheus-operator's labels for a ServiceMonitor target; `job` is the Service name.
                groups.push({
                    targets: [`127.0.0.1:${local.localPort}`],
                    labels: {
                        job: svc.metadata.name,
                        namespace: svc.metadata.namespace,
                        service: svc.metadata.name,
                        endpoint: ep.port,
                        pod: `${workload?.metadata.name ?? svc.metadata.name}-local`,
                        container: (workload as any)?.spec.template.spec.containers[0].name ?? "",
                    },
                });
            }
            add(`serviceMonitor/${sm.metadata.namespace}/${sm.metadata.name}/${i}`, ep, groups);
        });
    }
    for (const pm of stack.find("PodMonitor") as any[]) {
        const ns = namespacesOf(pm);
        pm.spec.podMetricsEndpoints.forEach((ep: any, i: number) => {
            const groups: TargetGroup[] = [];
            for (const pod of pods) {
                if (!ns.includes(pod.namespace) || !selectorMatches(pm.spec.selector, pod.labels) || pod.ports[ep.port] === undefined) continue;
                const extra = Object.fromEntries((pm.spec.podTargetLabels ?? []).filter((l: string) => l in pod.labels).map((l: string) => [sanitizeLabel(l), pod.labels[l]]));
                // For a PodMonitor, prometheus-operator sets `job` to <namespace>/<PodMonitor name>.
                groups.push({
                    targets: [`127.0.0.1:${pod.ports[ep.port]}`],
                    labels: { job: `${pm.metadata.namespace}/${pm.metadata.name}`, namespace: pod.namespace, pod: pod.name, container: pod.container, endpoint: ep.port, ...extra },
                });
            }
            add(`podMonitor/${pm.metadata.namespace}/${pm.metadata.name}/${i}`, ep, groups);
        });
    }
    return { jobs, targets };
}

/** prometheus.yml: the scrape jobs, and the rule file. */
export function prometheusConfig(jobs: ScrapeJob[], ruleFiles: string[]): string {
    return stringify({ global: { evaluation_interval: "30s" }, rule_files: ruleFiles, scrape_configs: jobs });
}

/** The rule file of all PrometheusRule objects: their `spec.groups`, as promtool and Prometheus read them. */
export function ruleFile(stack: RenderedStack): string {
    const groups = (stack.find("PrometheusRule") as any[]).flatMap((r) => r.spec.groups);
    return stringify({ groups }, { lineWidth: 0 });
}
