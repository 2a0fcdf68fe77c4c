// Runs policies without the Pulumi CLI or engine: builds the ResourceValidationArgs / StackValidationArgs
// the policy runtime would pass, from plain objects, and applies policies the way @pulumi/policy 1.21's
// server does (server.js makeAnalyzeRpcFun / makeAnalyzeStackRpcFun): props are deserialized (secrets
// unwrapped, undefined dropped) and wrapped in the runtime's own unknown-checking proxy; a validation
// that calls notApplicable() is recorded as not applicable; one that reads a value unknown during
// preview yields the runtime's advisory "can't run policy during preview" diagnostic; enforcement is
// the policy's level, else the pack's, with `remediate` reported as `mandatory`.
//
// Modeled on pulumi/compliance-policies' unit-test-helpers (createResourceValidationArgs,
// createStackValidationArgs, runResourcePolicy); @pulumi/policy itself exposes no test helpers.
// Used by the unit specs and by scripts/lib/policyRunner.ts; the Pulumi CLI never loads this file.
import {
    EnforcementLevel,
    Policies,
    Policy,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
} from "@pulumi/policy";
import { isUnknownValueError } from "./lib/unknowns";
import { PACK_NAME } from "./policies";

// The runtime's proxy, so that unknowns behave exactly as under the CLI. Internal to @pulumi/policy
// (its typings omit it), hence the typed require.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { unknownCheckingProxy } = require("@pulumi/policy/proxy") as { unknownCheckingProxy: <T>(value: T) => T };

/** What the engine sends for a value that is unknown during preview; put it in a fixture to model one. */
export const UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** The SDK's serialized-secret envelope (`@pulumi/pulumi/runtime/rpc`): {[sig]: secretSig, value}. */
const SPECIAL_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** A resource class (`k8s.apps.v1.Deployment`) or a type token (`kubernetes:monitoring.coreos.com/v1:ServiceMonitor`). */
export type ResourceType = string | { __pulumiType?: string; new (...rest: any[]): any };

function typeToken(t: ResourceType): string {
    if (typeof t === "string") return t;
    if (typeof t.__pulumiType !== "string") throw new Error(`${t.name} has no __pulumiType; pass the type token instead`);
    return t.__pulumiType;
}

/** Deserializes like the runtime: unwraps secrets, drops undefined properties, copies everything. */
function plainProps(value: unknown): any {
    if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : plainProps(v)));
    if (value !== null && typeof value === "object") {
        const o = value as Record<string, unknown>;
        if (o[SPECIAL_SIG] === SECRET_SIG) return plainProps(o.value);
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = plainProps(v);
        return out;
    }
    return value;
}

const isTypeOf = (type: string) => (cls: { new (...rest: any[]): any }) => (cls as { __pulumiType?: string }).__pulumiType === type;

const defaultOptions = (): PolicyResourceOptions => ({
    protect: false,
    ignoreChanges: [],
    aliases: [],
    customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    additionalSecretOutputs: [],
});

export interface FixtureOptions {
    /** Pulumi resource name; defaults to metadata.name, else "test". */
    name?: string;
    urn?: string;
    /** Policy config returned by getConfig(). */
    config?: Record<string, unknown>;
}

const resourceName = (props: any, options: FixtureOptions) =>
    options.name ?? (typeof props?.metadata?.name === "string" ? props.metadata.name : "test");
const fixtureUrn = (type: string, name: string, stack = "test", project = "test") => `urn:pulumi:${stack}::${project}::${type}::${name}`;

class NotApplicableError extends Error {
    constructor(readonly reason: string) {
        super(reason);
    }
}
const notApplicable = (reason?: string): never => {
    throw new NotApplicableError(reason ?? "");
};

/** The `args` a resource validation receives for a resource of `type` with inputs `props`. */
export function createResourceValidationArgs(type: ResourceType, props: Record<string, unknown>, options: FixtureOptions = {}): ResourceValidationArgs {
    return argsFor(createPolicyResource(type, props, options), options.config ?? {});
}

/** One resource of the stack, as a stack validation sees it. */
export function createPolicyResource(type: ResourceType, props: Record<string, unknown>, options: FixtureOptions & { dependencies?: PolicyResource[] } = {}): PolicyResource {
    const token = typeToken(type);
    const name = resourceName(props, options);
    const proxied = unknownCheckingProxy(plainProps(props));
    return {
        type: token,
        props: proxied,
        urn: options.urn ?? fixtureUrn(token, name),
        name,
        opts: defaultOptions(),
        dependencies: options.dependencies ?? [],
        propertyDependencies: {},
        isType: isTypeOf(token),
        asType: ((cls: { new (...rest: any[]): any }) => (isTypeOf(token)(cls) ? proxied : undefined)) as PolicyResource["asType"],
    };
}

/** The `args` a resource validation receives for one resource of the stack, with the policy's config. */
function argsFor(resource: PolicyResource, config: Record<string, unknown>): ResourceValidationArgs {
    return {
        type: resource.type,
        props: resource.props,
        urn: resource.urn,
        name: resource.name,
        opts: resource.opts,
        stackTags: new Map(),
        isType: resource.isType,
        asType: ((cls: { new (...rest: any[]): any }) => (resource.isType(cls) ? resource.props : undefined)) as ResourceValidationArgs["asType"],
        getConfig: <T extends object>() => config as T,
        notApplicable,
    };
}

/** The `args` a stack validation receives. */
export function createStackValidationArgs(resources: PolicyResource[], config: Record<string, unknown> = {}): StackValidationArgs {
    return { resources, stackTags: new Map(), getConfig: <T extends object>() => config as T, notApplicable };
}

export interface PolicyViolation {
    policyName: string;
    enforcementLevel: EnforcementLevel;
    message: string;
    /** The resource in violation, when the policy named one. */
    urn?: string;
}

export interface PolicyResult {
    violations: PolicyViolation[];
    /** False when every validation declared itself not applicable (e.g. a resource of another type). */
    applicable: boolean;
}

function effectiveLevel(policy: Policy, packLevel: EnforcementLevel): EnforcementLevel {
    const level = policy.enforcementLevel ?? packLevel;
    return level === "remediate" ? "mandatory" : level;
}

function unknownDiagnostic(policy: Policy, e: unknown): PolicyViolation {
    return {
        policyName: policy.name,
        enforcementLevel: "advisory",
        message: `can't run policy '${policy.name}' from policy pack '${PACK_NAME}' during preview: ${(e as Error).message}`,
    };
}

/** Applies one resource policy to one resource, as the runtime's Analyze call does. */
export async function runResourcePolicy(policy: ResourceValidationPolicy, args: ResourceValidationArgs, packLevel: EnforcementLevel = "advisory"): Promise<PolicyResult> {
    const level = effectiveLevel(policy, packLevel);
    const result: PolicyResult = { violations: [], applicable: false };
    if (level === "disabled" || !policy.validateResource) return result;
    const validations: ResourceValidation[] = Array.isArray(policy.validateResource) ? policy.validateResource : [policy.validateResource];
    const single = validations.length === 1 ? (validations[0] as { __pulumiType?: string }).__pulumiType : undefined;
    if (single && single !== args.type) return result;
    const report = (message: string) => result.violations.push({ policyName: policy.name, enforcementLevel: level, message, urn: args.urn });
    for (const validation of validations) {
        try {
            await validation(args, report);
            result.applicable = true;
        } catch (e) {
            if (e instanceof NotApplicableError) continue;
            result.applicable = true;
            if (isUnknownValueError(e)) result.violations.push({ ...unknownDiagnostic(policy, e), urn: args.urn });
            else throw new Error(`Error validating resource with policy '${policy.name}': ${(e as Error).message}`, { cause: e });
        }
    }
    return result;
}

/** Applies one stack policy, as the runtime's AnalyzeStack call does. */
export async function runStackPolicy(policy: StackValidationPolicy, args: StackValidationArgs, packLevel: EnforcementLevel = "advisory"): Promise<PolicyResult> {
    const level = effectiveLevel(policy, packLevel);
    const result: PolicyResult = { violations: [], applicable: false };
    if (level === "disabled") return result;
    const report = (message: string, urn?: string) => result.violations.push({ policyName: policy.name, enforcementLevel: level, message, ...(urn ? { urn } : {}) });
    try {
        await policy.validateStack(args, report);
        result.applicable = true;
    } catch (e) {
        if (e instanceof NotApplicableError) return result;
        result.applicable = true;
        if (isUnknownValueError(e)) result.violations.push(unknownDiagnostic(policy, e));
        else throw new Error(`Error validating stack with policy '${policy.name}': ${(e as Error).message}`, { cause: e });
    }
    return result;
}

const isStackPolicy = (p: Policies[number]): p is StackValidationPolicy => typeof (p as StackValidationPolicy).validateStack === "function";

export interface PackResult {
    violations: PolicyViolation[];
    /** Per policy: how many resources it applied to (stack policies: 1 if it ran). */
    applicable: Record<string, number>;
}

/**
 * Applies a whole pack to a stack: every resource policy to every resource, then every stack policy
 * to all resources, as `pulumi preview --policy-pack` would.
 */
export async function runPolicies(
    policies: Policies,
    resources: PolicyResource[],
    packLevel: EnforcementLevel = "mandatory",
    /** Per-policy config, as `--policy-pack-config` gives it: `{ "<policy name>": {...} }`. */
    packConfig: Record<string, Record<string, unknown>> = {},
): Promise<PackResult> {
    const out: PackResult = { violations: [], applicable: {} };
    for (const policy of policies) {
        out.applicable[policy.name] = 0;
        if (isStackPolicy(policy)) {
            const r = await runStackPolicy(policy, createStackValidationArgs(resources, packConfig[policy.name] ?? {}), packLevel);
            out.violations.push(...r.violations);
            if (r.applicable) out.applicable[policy.name] = 1;
            continue;
        }
        for (const resource of resources) {
            const r = await runResourcePolicy(policy as ResourceValidationPolicy, argsFor(resource, packConfig[policy.name] ?? {}), packLevel);
            out.violations.push(...r.violations);
            if (r.applicable) out.applicable[policy.name] += 1;
        }
    }
    return out;
}
