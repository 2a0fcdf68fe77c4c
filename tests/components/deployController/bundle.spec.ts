// How the controller ships without an image (components/deployController/bundle.ts): the esbuild bundle
// in a ConfigMap, plain or gzip, and the loader that runs it as mounted.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";
import { bundleFiles, controllerBundle } from "../../../components/deployController/bundle";
import { layOutBundle } from "../../fixtures/controller/process";

describe("DeployController bundle loader", function () {
    this.timeout(60000);
    let dir: string;
    before(() => {
        dir = mkdtempSync(path.join(tmpdir(), "dc-boot-"));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    for (const [mode, budget] of [
        ["gzip (binaryData)", 1],
        ["plain (data)", 64 * 1024 * 1024],
    ] as const) {
        it(`boot.js runs the ${mode} bundle as mounted from the ConfigMap`, () => {
            const d = mkdtempSync(path.join(dir, "m-"));
            layOutBundle(d, budget);
            writeFileSync(path.join(d, "config.json"), JSON.stringify({ models: [] }));
            const r = spawnSync(process.execPath, [path.join(d, "boot.js"), "--config", path.join(d, "config.json")], { encoding: "utf8", timeout: 20000 });
            assert.equal(r.status, 2, r.stderr);
            const line = JSON.parse(r.stdout.trim().split("\n")[0]);
            assert.equal(line.level, "error");
            assert.equal(line.msg, "cannot start: bad configuration");
            assert.equal(line.error, "invalid controller config: mlflow.artifactsDestination must be a non-empty string, not undefined");
        });
    }

    it("refuses a bundle that cannot fit a ConfigMap even compressed", () => {
        assert.throws(() => bundleFiles(controllerBundle().js, 1000, 1000), /does not fit a ConfigMap/);
    });
});
