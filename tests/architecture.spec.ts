// The dependency direction of the program (.dependency-cruiser.cjs), checked with dependency-cruiser
// on the real tree, and on a miniature tree that breaks each rule once to show the rules catch it.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..");
const CRUISE = path.join(ROOT, "node_modules", ".bin", "depcruise");

function cruise(cwd: string, dirs: string[]) {
    const r = spawnSync(CRUISE, ["--config", path.join(ROOT, ".dependency-cruiser.cjs"), "--output-type", "json", ...dirs], { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    assert.ok(r.stdout, `depcruise printed nothing: ${r.stderr}`);
    return JSON.parse(r.stdout) as {
        summary: { violations: { rule: { name: string }; from: string; to: string }[]; totalCruised: number };
        modules: { source: string; dependencies: { resolved: string }[] }[];
    };
}

describe("dependency direction (dependency-cruiser)", function () {
    this.timeout(120000);

    it("holds for the program: components/ and controller/ meet only in shared/, stacks/ reads only schemas, schemas are pure", () => {
        const result = cruise(ROOT, ["index.ts", "components", "controller", "shared", "stacks", "scripts"]);
        const violations = result.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
        assert.deepEqual(violations, []);
        // It really followed the imports the rules are about.
        const deps = (from: string) => result.modules.find((m) => m.source === from)?.dependencies.map((d) => d.resolved) ?? [];
        assert.ok(result.summary.totalCruised > 80, `only ${result.summary.totalCruised} modules cruised`);
        assert.ok(deps("stacks/schema.ts").includes("components/trackingServer/schema.ts"));
        assert.ok(deps("controller/registry.ts").includes("shared/mlflowRegistry.ts"));
        assert.ok(deps("components/deployController/config.ts").includes("shared/controllerConfig.ts"));
    });

    it("catches each broken rule in a miniature tree (tests/fixtures/architecture)", () => {
        const result = cruise(path.join(__dirname, "fixtures", "architecture"), ["components", "controller", "stacks", "shared"]);
        const broken = new Set(result.summary.violations.map((v) => v.rule.name));
        assert.deepEqual(
            [...broken].sort(),
            ["components-not-controller", "components-not-stacks", "controller-not-components", "no-circular", "schemas-are-pure", "shared-owned-by-none", "stacks-reads-schemas-only"],
        );
    });
});
