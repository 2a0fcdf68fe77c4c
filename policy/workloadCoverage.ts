// Cross-object rules per workload: what must exist beside it in the stack. These need the whole stack,
// so they are stack policies. A reference that is unknown during preview is skipped, not reported:
// a workload whose labels are unknown, or a candidate whose selector is unknown when no other candidate
// definitely matches.
import * as k8s from "@pulumi/kubernetes";
import { PolicyResource, StackValidationPolicy } from "@pulumi/policy";
import { labelSelectorMatches } from "./lib/selectors";
import { anyOf, attempt, must, UNKNOWN } from "./lib/unknowns";
import { namespaceOf, objectNameOf, Workload, workloadsOf } from "./lib/workloads";

const sameNamespace = (c: PolicyResource, w: Workload) => must(namespaceOf(c)) === must(w.namespace);

/** Kinds that a voluntary disruption (node drain) evicts and that keep serving: kube-score and Polaris scope. */
const PDB_KINDS = ["Deployment", "StatefulSet"];

export const podDisruptionBudgetPerWorkload: StackValidationPolicy = {
    name: "workload-has-pod-disruption-budget",
    description:
        "Every Deployment and StatefulSet is selected by a PodDisruptionBudget (policy/v1) in its namespace, matched on its pod template labels " +
        "(matchLabels and matchExpressions). Jobs, CronJobs and bare Pods run to completion and DaemonSet pods are not evicted by a drain, so they are not required to have one. " +
        "Upstream: KS:deployment-has-poddisruptionbudget, KS:statefulset-has-poddisruptionbudget, PO:missingPodDisruptionBudget.",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateStack: (args, report) => {
        const pdbs = args.resources.filter((r) => r.isType(k8s.policy.v1.PodDisruptionBudget));
        for (const w of workloadsOf(args.resources, PDB_KINDS)) {
            if (w.namespace === UNKNOWN || w.podLabels === UNKNOWN) continue;
            const covered = anyOf(pdbs, (p) => sameNamespace(p, w) && labelSelectorMatches(p.props.spec?.selector, must(w.podLabels)));
            if (covered === false) report(`${w.id}: no PodDisruptionBudget selects its pods`, w.resource.urn);
        }
    },
};

/** The directions a NetworkPolicy isolates: its policyTypes, or (unset) Ingress plus Egress if it has egress rules. */
export function policyTypesOf(spec: { policyTypes?: string[]; egress?: unknown[] } | undefined): string[] {
    if (spec?.policyTypes && spec.policyTypes.length > 0) return [...spec.policyTypes];
    return spec?.egress && spec.egress.length > 0 ? ["Ingress", "Egress"] : ["Ingress"];
}

const DIRECTIONS = ["Ingress", "Egress"];

export const networkPolicyPerWorkload: StackValidationPolicy = {
    name: "workload-has-network-policy",
    description:
        "The pods of every workload (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod) are selected by NetworkPolicies in their namespace " +
        "that isolate them for both Ingress and Egress (one policy or several; an empty podSelector selects every pod of the namespace). " +
        "Upstream: KS:pod-networkpolicy, KL:non-isolated-pod, PO:missingNetworkPolicy, CKV2_K8S_6, CIS 5.3.2.",
    enforcementLevel: "mandatory",
    severity: "high",
    validateStack: (args, report) => {
        const netpols = args.resources.filter((r) => r.isType(k8s.networking.v1.NetworkPolicy));
        for (const w of workloadsOf(args.resources)) {
            if (w.namespace === UNKNOWN || w.podLabels === UNKNOWN) continue;
            const missing: string[] = [];
            for (const direction of DIRECTIONS) {
                const covered = anyOf(
                    netpols,
                    (np) =>
                        sameNamespace(np, w) &&
                        labelSelectorMatches(np.props.spec?.podSelector, must(w.podLabels)) &&
                        policyTypesOf(np.props.spec).includes(direction),
                );
                if (covered === UNKNOWN) {
                    missing.length = 0;
                    break;
                }
                if (!covered) missing.push(direction);
            }
            if (missing.length > 0) report(`${w.id}: no NetworkPolicy selects its pods for ${missing.join(" and ")}`, w.resource.urn);
        }
    },
};

export const dedicatedServiceAccount: StackValidationPolicy = {
    name: "workload-dedicated-service-account",
    description:
        "Every workload's pods run as a named ServiceAccount other than `default` (spec.serviceAccountName), and that ServiceAccount " +
        "is declared in the stack in the workload's namespace. Upstream: KL:default-service-account, KL:non-existent-service-account, CKV_K8S_41, CKV_K8S_42, CIS 5.1.5.",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateStack: (args, report) => {
        const accounts = args.resources.filter((r) => r.isType(k8s.core.v1.ServiceAccount));
        for (const w of workloadsOf(args.resources)) {
            if (w.namespace === UNKNOWN || w.podSpec === UNKNOWN) continue;
            const spec = w.podSpec;
            const name = attempt(() => spec.serviceAccountName ?? (spec as { serviceAccount?: string }).serviceAccount);
            if (name === UNKNOWN) continue;
            if (name === undefined || name === "" || name === "default") {
                report(`${w.id}: runs as the default ServiceAccount; set spec.serviceAccountName to a dedicated one`, w.resource.urn);
                continue;
            }
            const exists = anyOf(accounts, (sa) => sameNamespace(sa, w) && must(objectNameOf(sa)) === name);
            if (exists === false) report(`${w.id}: ServiceAccount "${name}" is not declared in namespace ${w.namespace} in this stack`, w.resource.urn);
        }
    },
};
