// Cross-object rules on what routes traffic: every Service reaches some workload's pods, every Ingress
// backend and every ServiceMonitor reaches a Service. All within the stack; references unknown during
// preview are skipped.
import * as k8s from "@pulumi/kubernetes";
import { PolicyResource, StackValidationPolicy } from "@pulumi/policy";
import { describeSelector, labelSelectorMatches, Labels, mapSelectorMatches } from "./lib/selectors";
import { anyOf, attempt, must, UNKNOWN } from "./lib/unknowns";
import { describeObject, namespaceOf, objectNameOf, workloadsOf } from "./lib/workloads";

export const SERVICE_MONITOR_TYPE = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor";

export const serviceSelectsWorkload: StackValidationPolicy = {
    name: "service-selects-workload",
    description:
        "Every Service with a selector selects the pod template labels of at least one workload in its namespace in the stack " +
        "(Services without a selector, and ExternalName Services, are skipped). Upstream: KS:service-targets-pod, KL:dangling-service.",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateStack: (args, report) => {
        const workloads = workloadsOf(args.resources);
        for (const svc of args.resources.filter((r) => r.isType(k8s.core.v1.Service))) {
            const spec = attempt(() => ({ type: svc.props.spec?.type, selector: svc.props.spec?.selector as Labels | undefined }));
            const ns = namespaceOf(svc);
            if (spec === UNKNOWN || ns === UNKNOWN) continue;
            if (spec.type === "ExternalName" || Object.keys(spec.selector ?? {}).length === 0) continue;
            const selected = anyOf(workloads, (w) => must(w.namespace) === ns && mapSelectorMatches(spec.selector, must(w.podLabels)));
            if (selected === false) {
                report(`${describeObject("Service", svc)} selects no workload's pods (selector ${describeSelector(spec.selector)})`, svc.urn);
            }
        }
    },
};

interface ServiceBackend {
    name?: string;
    port?: { number?: number; name?: string };
}

/** Every service backend of an Ingress: the default backend and each rule path's. */
function serviceBackends(spec: any): ServiceBackend[] {
    const out: ServiceBackend[] = [];
    if (spec?.defaultBackend?.service) out.push(spec.defaultBackend.service);
    for (const rule of spec?.rules ?? []) {
        for (const path of rule?.http?.paths ?? []) if (path?.backend?.service) out.push(path.backend.service);
    }
    return out;
}

export const ingressBackendsExist: StackValidationPolicy = {
    name: "ingress-backend-service-exists",
    description:
        "Every service backend of every Ingress (networking.k8s.io/v1; default backend and rule paths) names a Service declared in the stack " +
        "in the Ingress's namespace, on a port (number or name) that Service exposes. Upstream: KS:ingress-targets-service, KL:dangling-ingress.",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateStack: (args, report) => {
        const services = args.resources.filter((r) => r.isType(k8s.core.v1.Service));
        for (const ing of args.resources.filter((r) => r.isType(k8s.networking.v1.Ingress))) {
            const ns = namespaceOf(ing);
            const backends = attempt(() => serviceBackends(ing.props.spec));
            if (ns === UNKNOWN || backends === UNKNOWN) continue;
            for (const b of backends) {
                attempt(() => {
                    const name = must(b.name);
                    if (!name) return;
                    const named = (s: PolicyResource) => must(namespaceOf(s)) === ns && must(objectNameOf(s)) === name;
                    const exists = anyOf(services, named);
                    if (exists === UNKNOWN) return;
                    if (!exists) {
                        report(`${describeObject("Ingress", ing)}: backend Service "${name}" is not declared in namespace ${ns} in this stack`, ing.urn);
                        return;
                    }
                    const definite = services.filter((s) => attempt(() => named(s)) === true);
                    const port = b.port;
                    if (!port || (port.number === undefined && !port.name)) return;
                    const exposes = anyOf(definite, (s) =>
                        ((s.props.spec?.ports ?? []) as { port?: number; name?: string }[]).some((p) =>
                            port.number !== undefined ? p.port === port.number : p.name === port.name,
                        ),
                    );
                    if (exposes === false) {
                        const what = port.number !== undefined ? `port ${port.number}` : `port named "${port.name}"`;
                        report(`${describeObject("Ingress", ing)}: backend Service "${name}" has no ${what}`, ing.urn);
                    }
                });
            }
        }
    },
};

/** Whether a ServiceMonitor's namespaceSelector (`any`, `matchNames`, default: its own namespace) admits `ns`. */
export function serviceMonitorWatches(namespaceSelector: { any?: boolean; matchNames?: string[] } | undefined, ownNamespace: string, ns: string): boolean {
    if (namespaceSelector?.any === true) return true;
    const names = namespaceSelector?.matchNames ?? [];
    return names.length > 0 ? names.includes(ns) : ns === ownNamespace;
}

export const serviceMonitorSelectsService: StackValidationPolicy = {
    name: "servicemonitor-selects-service",
    description:
        "Every ServiceMonitor (monitoring.coreos.com/v1) selects, with its selector (matchLabels and matchExpressions) and namespaceSelector, " +
        "the labels of at least one Service declared in the stack, and each endpoint's named port is a port name of a selected Service. " +
        "Upstream: KL:dangling-servicemonitor.",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateStack: (args, report) => {
        const services = args.resources.filter((r) => r.isType(k8s.core.v1.Service));
        for (const sm of args.resources.filter((r) => r.type === SERVICE_MONITOR_TYPE)) {
            const ns = namespaceOf(sm);
            const spec = attempt(() => sm.props.spec);
            if (ns === UNKNOWN || spec === UNKNOWN) continue;
            const selects = (s: PolicyResource) =>
                serviceMonitorWatches(spec?.namespaceSelector, ns, must(namespaceOf(s))) && labelSelectorMatches(spec?.selector, s.props.metadata?.labels ?? {});
            const selected = services.filter((s) => attempt(() => selects(s)) === true);
            const undecided = services.some((s) => attempt(() => selects(s)) === UNKNOWN);
            if (selected.length === 0) {
                if (!undecided) report(`${describeObject("ServiceMonitor", sm)} selects no Service in the stack (selector ${describeSelector(spec?.selector)})`, sm.urn);
                continue;
            }
            if (undecided) continue;
            const endpoints = attempt(() => (spec?.endpoints ?? []) as { port?: string }[]);
            if (endpoints === UNKNOWN) continue;
            for (const e of endpoints) {
                attempt(() => {
                    const port = e.port;
                    if (typeof port !== "string" || port === "") return;
                    const found = anyOf(selected, (s) => ((s.props.spec?.ports ?? []) as { name?: string }[]).some((p) => p.name === port));
                    if (found === false) report(`${describeObject("ServiceMonitor", sm)}: endpoint port "${port}" is not a port name of any Service it selects`, sm.urn);
                });
            }
        }
    },
};
