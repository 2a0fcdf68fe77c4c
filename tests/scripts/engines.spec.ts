// The Node.js range the project promises (package.json engines, the README's prerequisites) must be
// one every locked dependency accepts: npm only warns on a mismatch, and the program then fails late.
import assert from "assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as semver from "semver";
import { ROOT } from "../harness";

const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");
const promised: string = JSON.parse(read("package.json")).engines.node;

describe("the Node.js version", () => {
    it("every locked package accepts each Node.js version package.json promises", () => {
        const lock = JSON.parse(read("package-lock.json"));
        const refusing = Object.entries<any>(lock.packages)
            .filter(([, p]) => typeof p.engines?.node === "string" && !semver.subset(promised, p.engines.node))
            .map(([where, p]) => `${where.replace(/^.*node_modules\//, "")}@${p.version} wants ${p.engines.node}`);
        assert.deepEqual(refusing, [], `package.json engines.node is ${promised}`);
    });

    it("the README's prerequisites state the same range", () => {
        const readme = read("README.md");
        assert.ok(readme.includes(`Node.js ${promised}`), `README should say "Node.js ${promised}"`);
    });
});
