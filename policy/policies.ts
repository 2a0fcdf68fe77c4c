// Every policy of the pack, in one list: `index.ts` serves it to the Pulumi CLI, and the tests and
// scripts/lib/policyRunner.ts apply it without the CLI. Importing this module starts nothing.
import { Policies } from "@pulumi/policy";
import { resourceRequestsAndLimits } from "./containerResources";
import { emptyDirWithinEphemeralStorage } from "./ephemeralStorage";
import { pinnedImages } from "./imageTags";
import { ingressTls } from "./ingressTls";
import { dropAllCapabilities, noPrivilegeEscalation, runAsNonRoot, seccompRuntimeDefault } from "./podSecurity";
import { noPlaintextSecretEnv } from "./secretEnv";
import { ingressBackendsExist, serviceMonitorSelectsService, serviceSelectsWorkload } from "./serviceTargets";
import { dedicatedServiceAccount, networkPolicyPerWorkload, podDisruptionBudgetPerWorkload } from "./workloadCoverage";

export const PACK_NAME = "mlflow-platform";

/** Resource policies: run on each resource's inputs before it is created or updated. */
export const resourcePolicies = [
    runAsNonRoot,
    noPrivilegeEscalation,
    dropAllCapabilities,
    seccompRuntimeDefault,
    resourceRequestsAndLimits,
    emptyDirWithinEphemeralStorage,
    pinnedImages,
    noPlaintextSecretEnv,
    ingressTls,
];

/** Stack policies: run on the whole stack once every resource is registered. */
export const stackPolicies = [
    podDisruptionBudgetPerWorkload,
    networkPolicyPerWorkload,
    dedicatedServiceAccount,
    serviceSelectsWorkload,
    ingressBackendsExist,
    serviceMonitorSelectsService,
];

export const policies: Policies = [...resourcePolicies, ...stackPolicies];
