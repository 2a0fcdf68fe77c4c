import * as fs from "fs";
import * as path from "path";
// Applies the CrossGuard policy pack (policy/) to the resources one run of the program registered under
// the mock runtime (scripts/lib/program.ts), without the Pulumi CLI: what `pulumi preview --policy-pack
// policy/` would report for that stack, resource policies and stack policies alike.
import { EnforcementLevel, Policies, PolicyResource } from "@pulumi/policy";
import { policies as pack } from "../../policy/policies";
import { createPolicyResource, PackResult, PolicyViolation, runPolicies } from "../../policy/testing";
import { PROJECT, Registered } from "./mockRuntime";

export type { PolicyViolation } from "../../policy/testing";

/** `urn:pulumi:<stack>::<project>::<parent$…$type>::<name>` → `<type>::<name>` (the parent chain dropped). */
function typeAndName(urn: string): string | undefined {
    const parts = urn.split("::");
    if (parts.length < 4 || !parts[0].startsWith("urn:pulumi:")) return undefined;
    const qualified = parts[2].split("$");
    return `${qualified[qualified.length - 1]}::${parts.slice(3).join("::")}`;
}

/**
 * The registered resources as the policy runtime receives them. Props are the inputs sent to the
 * provider, with secrets unwrapped (as the runtime deserializes them) and, for Kubernetes objects,
 * `metadata.name` defaulted to the resource name the way the mock runtime and the render name them
 * (on a cluster the provider appends a random suffix to such names).
 *
 * The mock runtime does not record parents, so URNs cannot carry the parent chain; they are
 * `urn:pulumi:<stack>::<project>::<type>::<name>`, and since several components give children the same
 * type and name (every component's `mlflow-sa`), the second and later ones get `#2`, `#3`… appended to
 * the name part to keep URNs unique. Dependencies are matched on type and name where that is unique.
 */
export function toPolicyResources(registered: Registered[], stack: string): PolicyResource[] {
    const seen = new Map<string, number>();
    const resources = registered.map((r) => {
        const inputs = { ...(r.inputs ?? {}) } as Record<string, any>;
        if (r.custom && r.type.startsWith("kubernetes:")) {
            inputs.metadata = { name: r.name, ...(inputs.metadata ?? {}) };
        }
        const key = `${r.type}::${r.name}`;
        const n = (seen.get(key) ?? 0) + 1;
        seen.set(key, n);
        const urn = `urn:pulumi:${stack}::${PROJECT}::${r.type}::${r.name}${n > 1 ? `#${n}` : ""}`;
        return createPolicyResource(r.type, inputs, { name: r.name, urn });
    });
    const byKey = new Map<string, PolicyResource[]>();
    for (const p of resources) byKey.set(`${p.type}::${p.name}`, [...(byKey.get(`${p.type}::${p.name}`) ?? []), p]);
    registered.forEach((r, i) => {
        resources[i].dependencies = r.dependencies
            .map((urn) => byKey.get(typeAndName(urn) ?? "") ?? [])
            .filter((candidates) => candidates.length === 1)
            .map((candidates) => candidates[0]);
    });
    return resources;
}

export interface PolicyRunOptions {
    /** Stack name, for URNs. */
    stack?: string;
    /** Defaults to the whole pack. */
    policies?: Policies;
    /** The pack's enforcement level (policy/index.ts uses mandatory). */
    enforcementLevel?: EnforcementLevel;
    /** Policy config; defaults to policy/config/<stack>.json when that file exists. */
    packConfig?: Record<string, Record<string, unknown>>;
}

/** The `--policy-pack-config` file a stack is previewed with, if it has one. */
export function stackPolicyConfig(stack: string): Record<string, Record<string, unknown>> {
    const file = path.join(__dirname, "..", "..", "policy", "config", `${stack}.json`);
    return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
}

/** Violations plus, per policy, how many resources it applied to. */
export async function evaluatePolicyPack(registered: Registered[], options: PolicyRunOptions = {}): Promise<PackResult> {
    const resources = toPolicyResources(registered, options.stack ?? "stack");
    const packConfig = options.packConfig ?? (options.stack ? stackPolicyConfig(options.stack) : {});
    return runPolicies(options.policies ?? pack, resources, options.enforcementLevel ?? "mandatory", packConfig);
}

/** Every violation the pack reports for the registered resources (advisory ones included). */
export async function runPolicyPack(registered: Registered[], options: PolicyRunOptions = {}): Promise<PolicyViolation[]> {
    return (await evaluatePolicyPack(registered, options)).violations;
}

/** `[mandatory] workload-image-pinned (kubernetes:apps/v1:Deployment::mlflow-server): message` */
export function formatViolation(v: PolicyViolation): string {
    const where = v.urn ? v.urn.split("::").slice(2).join("::") : undefined;
    return `[${v.enforcementLevel}] ${v.policyName}${where ? ` (${where})` : ""}: ${v.message}`;
}
