// What every workload kind has in common for the policies: a pod template (labels and spec) and its
// containers. One place knows where each kind keeps its pod template.
import * as k8s from "@pulumi/kubernetes";
import { PolicyResource, ReportViolation, ResourceValidation, ResourceValidationArgs, validateResourceOfType } from "@pulumi/policy";
import { Unwrap } from "@pulumi/pulumi";
import { Labels } from "./selectors";
import { attempt, isUnknownSentinel, UNKNOWN, Unknown } from "./unknowns";

export type PodSpec = Unwrap<k8s.types.input.core.v1.PodSpec>;
export type Container = Unwrap<k8s.types.input.core.v1.Container>;

/** A check of one pod spec; `report` is the policy's reportViolation. */
export type PodSpecCheck = (spec: PodSpec, report: ReportViolation, args: ResourceValidationArgs) => void;

/**
 * The workload kinds every pod policy covers. Each gets its own `validateResourceOfType`, so the policy
 * runtime reports the policy as not applicable to every other type.
 */
export function validatePodSpecs(check: PodSpecCheck): ResourceValidation[] {
    const run = (spec: () => PodSpec | undefined, args: ResourceValidationArgs, report: ReportViolation) => {
        const s = attempt(spec);
        if (s !== UNKNOWN && s) check(s, report, args);
    };
    return [
        validateResourceOfType(k8s.apps.v1.Deployment, (o, args, report) => run(() => o.spec?.template?.spec, args, report)),
        validateResourceOfType(k8s.apps.v1.StatefulSet, (o, args, report) => run(() => o.spec?.template?.spec, args, report)),
        validateResourceOfType(k8s.apps.v1.DaemonSet, (o, args, report) => run(() => o.spec?.template?.spec, args, report)),
        validateResourceOfType(k8s.batch.v1.Job, (o, args, report) => run(() => o.spec?.template?.spec, args, report)),
        validateResourceOfType(k8s.batch.v1.CronJob, (o, args, report) => run(() => o.spec?.jobTemplate?.spec?.template?.spec, args, report)),
        validateResourceOfType(k8s.core.v1.Pod, (o, args, report) => run(() => o.spec, args, report)),
    ];
}

export interface ContainerRef {
    container: Container;
    /** `container "mlflow"` or `init container "wait-for-db"`, for messages. */
    where: string;
}

/**
 * Calls `f` for every init container and container of a pod spec. Each call is isolated: one that
 * reads a value unknown during preview skips that container only.
 */
export function forEachContainer(spec: PodSpec, f: (ref: ContainerRef) => void): void {
    const groups: [string, () => Container[] | undefined][] = [
        ["init container", () => spec.initContainers],
        ["container", () => spec.containers],
    ];
    for (const [role, list] of groups) {
        const containers = attempt(list);
        if (containers === UNKNOWN || !containers) continue;
        containers.forEach((container, i) => {
            attempt(() => {
                const name = typeof container.name === "string" && !isUnknownSentinel(container.name) ? container.name : `#${i}`;
                f({ container, where: `${role} "${name}"` });
            });
        });
    }
}

/** Workload kinds as the stack policies see them, with where each keeps its pod template. */
const WORKLOAD_KINDS: { kind: string; cls: { new (...rest: any[]): any }; template: (props: any) => { labels?: Labels; spec?: PodSpec } | undefined }[] = [
    { kind: "Deployment", cls: k8s.apps.v1.Deployment, template: (p) => ({ labels: p.spec?.template?.metadata?.labels, spec: p.spec?.template?.spec }) },
    { kind: "StatefulSet", cls: k8s.apps.v1.StatefulSet, template: (p) => ({ labels: p.spec?.template?.metadata?.labels, spec: p.spec?.template?.spec }) },
    { kind: "DaemonSet", cls: k8s.apps.v1.DaemonSet, template: (p) => ({ labels: p.spec?.template?.metadata?.labels, spec: p.spec?.template?.spec }) },
    { kind: "Job", cls: k8s.batch.v1.Job, template: (p) => ({ labels: p.spec?.template?.metadata?.labels, spec: p.spec?.template?.spec }) },
    {
        kind: "CronJob",
        cls: k8s.batch.v1.CronJob,
        template: (p) => ({ labels: p.spec?.jobTemplate?.spec?.template?.metadata?.labels, spec: p.spec?.jobTemplate?.spec?.template?.spec }),
    },
    { kind: "Pod", cls: k8s.core.v1.Pod, template: (p) => ({ labels: p.metadata?.labels, spec: p.spec }) },
];

export interface Workload {
    resource: PolicyResource;
    kind: string;
    /** `Deployment mlflow/mlflow-server`, for messages. */
    id: string;
    namespace: string | Unknown;
    podLabels: Labels | Unknown;
    podSpec: PodSpec | Unknown;
}

/** The Kubernetes namespace of an object: `metadata.namespace`, else the provider's `default`. */
export function namespaceOf(r: PolicyResource): string | Unknown {
    const ns = attempt(() => r.props.metadata?.namespace);
    if (ns === UNKNOWN) return UNKNOWN;
    return typeof ns === "string" && ns !== "" ? ns : "default";
}

/** The object's name: `metadata.name`, else the resource name (the provider derives the name from it). */
export function objectNameOf(r: PolicyResource): string | Unknown {
    const name = attempt(() => r.props.metadata?.name);
    if (name === UNKNOWN) return UNKNOWN;
    return typeof name === "string" && name !== "" ? name : r.name;
}

/** `Kind namespace/name`, for messages. */
export function describeObject(kind: string, r: PolicyResource): string {
    const show = (v: string | Unknown) => (v === UNKNOWN ? "<unknown>" : v);
    return `${kind} ${show(namespaceOf(r))}/${show(objectNameOf(r))}`;
}

/** Every workload in the stack, of the kinds in `kinds` (default: all). */
export function workloadsOf(resources: PolicyResource[], kinds?: string[]): Workload[] {
    const out: Workload[] = [];
    for (const r of resources) {
        const k = WORKLOAD_KINDS.find((w) => r.isType(w.cls));
        if (!k || (kinds && !kinds.includes(k.kind))) continue;
        const labels = attempt(() => k.template(r.props)?.labels ?? {});
        const spec = attempt(() => k.template(r.props)?.spec ?? ({} as PodSpec));
        out.push({ resource: r, kind: k.kind, id: describeObject(k.kind, r), namespace: namespaceOf(r), podLabels: labels, podSpec: spec });
    }
    return out;
}
