// Pod Security `restricted` controls on every container (init containers too) of every workload kind.
// Effective values follow Kubernetes: a container's securityContext overrides the pod's.
import { ResourceValidationPolicy } from "@pulumi/policy";
import { forEachContainer, validatePodSpecs } from "./lib/workloads";

export const runAsNonRoot: ResourceValidationPolicy = {
    name: "workload-run-as-non-root",
    description:
        "Every container, init containers included, runs with runAsNonRoot: true (set on the pod or the container) and not as UID 0. " +
        "Upstream: KS:container-security-context-user-group-id, KL:run-as-non-root, PO:runAsRootAllowed, CKV_K8S_23, PSS:restricted, CIS 5.2.7.",
    enforcementLevel: "mandatory",
    severity: "high",
    validateResource: validatePodSpecs((spec, report) => {
        forEachContainer(spec, ({ container, where }) => {
            const nonRoot = container.securityContext?.runAsNonRoot ?? spec.securityContext?.runAsNonRoot;
            const user = container.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;
            if (nonRoot !== true) {
                report(`${where} may run as root: set securityContext.runAsNonRoot: true on the pod or the container`);
            }
            if (user === 0) report(`${where} runs as UID 0: runAsUser must be a non-zero UID`);
        });
    }),
};

export const noPrivilegeEscalation: ResourceValidationPolicy = {
    name: "workload-no-privilege-escalation",
    description:
        "Every container, init containers included, sets securityContext.allowPrivilegeEscalation: false explicitly. " +
        "Upstream: KL:privilege-escalation-container, PO:privilegeEscalationAllowed, CKV_K8S_20, PSS:restricted, CIS 5.2.6.",
    enforcementLevel: "mandatory",
    severity: "high",
    validateResource: validatePodSpecs((spec, report) => {
        forEachContainer(spec, ({ container, where }) => {
            if (container.securityContext?.allowPrivilegeEscalation !== false) {
                report(`${where}: securityContext.allowPrivilegeEscalation must be false`);
            }
        });
    }),
};

/** The one capability the restricted profile lets a container add back. */
const ADDABLE = new Set(["NET_BIND_SERVICE"]);

export const dropAllCapabilities: ResourceValidationPolicy = {
    name: "workload-drop-all-capabilities",
    description:
        "Every container, init containers included, drops ALL capabilities and adds none back except NET_BIND_SERVICE. " +
        "Upstream: KL:drop-net-raw-capability, PO:insecureCapabilities, PO:dangerousCapabilities, CKV_K8S_25, CKV_K8S_28, CKV_K8S_37, CKV_K8S_39, PSS:restricted, CIS 5.2.8-5.2.10.",
    enforcementLevel: "mandatory",
    severity: "high",
    validateResource: validatePodSpecs((spec, report) => {
        forEachContainer(spec, ({ container, where }) => {
            const caps = container.securityContext?.capabilities;
            if (!(caps?.drop ?? []).includes("ALL")) report(`${where}: securityContext.capabilities.drop must include ALL`);
            const added = (caps?.add ?? []).filter((c) => !ADDABLE.has(c));
            if (added.length > 0) report(`${where}: adds capabilities ${added.join(", ")}; only NET_BIND_SERVICE may be added`);
        });
    }),
};

const ALLOWED_SECCOMP = new Set(["RuntimeDefault", "Localhost"]);

export const seccompRuntimeDefault: ResourceValidationPolicy = {
    name: "workload-seccomp-runtime-default",
    description:
        "Every container, init containers included, runs under the RuntimeDefault seccomp profile (or a Localhost profile), " +
        "set in the pod securityContext or the container's. Upstream: KS:container-seccomp-profile, PO:linuxHardening, CKV_K8S_31, CKV_K8S_32, PSS:restricted, CIS 5.7.2.",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateResource: validatePodSpecs((spec, report) => {
        forEachContainer(spec, ({ container, where }) => {
            const type = container.securityContext?.seccompProfile?.type ?? spec.securityContext?.seccompProfile?.type;
            if (type === undefined || !ALLOWED_SECCOMP.has(type)) {
                report(`${where}: seccompProfile.type must be RuntimeDefault (set it in the pod securityContext), got ${type ?? "none"}`);
            }
        });
    }),
};
