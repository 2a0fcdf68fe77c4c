// emptyDir size limits within the pod's ephemeral-storage limit, so a volume's promised space is space the
// pod may actually use (a dump or upload spooled past the limit gets the pod evicted, not a disk-full error).
import { ResourceValidationPolicy } from "@pulumi/policy";
import { ephemeralStorageFit } from "./lib/ephemeralStorage";
import { attempt, UNKNOWN } from "./lib/unknowns";
import { validatePodSpecs } from "./lib/workloads";

export const emptyDirWithinEphemeralStorage: ResourceValidationPolicy = {
    name: "workload-emptydir-within-ephemeral-storage",
    description:
        "Every disk-backed emptyDir has a sizeLimit, and a pod's sizeLimits summed fit within its ephemeral-storage limit " +
        "(the containers' limits summed, or the largest init container's). Upstream: KS:container-ephemeral-storage-request-and-limit " +
        "(which asks for the limit; this also checks that the volumes fit it).",
    enforcementLevel: "mandatory",
    severity: "medium",
    validateResource: validatePodSpecs((spec, report) => {
        let fit;
        try {
            // A size unknown during preview skips the pod; a malformed one is Kubernetes' to refuse.
            fit = attempt(() => ephemeralStorageFit(spec));
        } catch (e) {
            report(`cannot compare its emptyDir sizes with its ephemeral-storage limit: ${(e as Error).message}`);
            return;
        }
        if (fit === UNKNOWN) return;
        for (const problem of fit.problems) report(problem);
    }),
};
