// Shared body of the per-stack policy specs: runs index.ts for one stack under the mock runtime (once per
// mocha process, since the program registers its resources on import) and applies the whole CrossGuard
// pack to what it registered, as `pulumi preview --policy-pack policy/` would on that stack.
import assert from "assert/strict";
import { PackResult } from "../../../policy/testing";
import { resourcePolicies, stackPolicies } from "../../../policy/policies";
import { evaluatePolicyPack, formatViolation } from "../../../scripts/lib/policyRunner";
import { runProgram } from "../../../scripts/lib/program";

/** Resource policies that apply to workloads: each must have checked at least one resource. */
const WORKLOAD_POLICIES = resourcePolicies.map((p) => p.name).filter((n) => n.startsWith("workload-"));

export function describePolicyStack(stack: string, options: { stackDir?: string } = {}): void {
    describe(`policy pack on stack ${stack}`, () => {
        let result: PackResult;
        before(async () => {
            const run = await runProgram(stack, { stackDir: options.stackDir });
            result = await evaluatePolicyPack(run.resources, { stack });
        });

        it("checks every workload policy against the stack's workloads, and runs every stack policy", () => {
            for (const name of WORKLOAD_POLICIES) assert.ok(result.applicable[name] >= 4, `${name} applied to ${result.applicable[name]} resources`);
            assert.equal(stackPolicies.length, 6);
            for (const { name } of stackPolicies) assert.equal(result.applicable[name], 1, `stack policy ${name} did not run`);
        });

        it("reports no violation", () => {
            assert.deepEqual(result.violations.map(formatViolation), []);
        });
    });
}
