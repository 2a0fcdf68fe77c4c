// Requests and limits for cpu and memory on every container, so the scheduler can place pods and a
// runaway process cannot starve its node.
import { ResourceValidationPolicy } from "@pulumi/policy";
import { forEachContainer, validatePodSpecs } from "./lib/workloads";

const REQUIRED = ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"] as const;

export const resourceRequestsAndLimits: ResourceValidationPolicy = {
    name: "workload-resource-requests-limits",
    description:
        "Every container, init containers included, sets resources.requests and resources.limits for cpu and memory explicitly. " +
        "Upstream: KS:container-resources, KL:unset-cpu-requirements, KL:unset-memory-requirements, PO:cpuRequestsMissing, " +
        "PO:memoryRequestsMissing, PO:cpuLimitsMissing, PO:memoryLimitsMissing, CKV_K8S_10, CKV_K8S_11, CKV_K8S_12, CKV_K8S_13.",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateResource: validatePodSpecs((spec, report) => {
        forEachContainer(spec, ({ container, where }) => {
            const resources = (container.resources ?? {}) as { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
            const missing = REQUIRED.filter((path) => {
                const [kind, name] = path.split(".") as ["requests" | "limits", string];
                const value = resources[kind]?.[name];
                return value === undefined || value === null || value === "";
            });
            if (missing.length > 0) report(`${where} has no ${missing.map((m) => `resources.${m}`).join(", ")}`);
        });
    }),
};
