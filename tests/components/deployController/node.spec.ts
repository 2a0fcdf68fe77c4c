// The deploy controller's Node.js: a supported LTS, pinned to a patch release, with the bundle compiled
// for the same major, and a stack that points deployController.image at an older official node refused.
import assert from "assert/strict";
import { BUNDLE_TARGET } from "../../../components/deployController/bundle";
import { deployControllerSchema } from "../../../components/deployController/schema";
import { CONTROLLER_NODE_IMAGE, CONTROLLER_NODE_MAJOR } from "../../../components/images";

/** End of upstream support of each LTS major (nodejs/Release schedule.json). */
const LTS_END_OF_LIFE: Record<number, string> = { 20: "2026-04-30", 22: "2027-04-30", 24: "2028-04-30" };

const imageProblems = (image: string) => {
    const r = deployControllerSchema.safeParse({ image });
    return r.success ? [] : r.error.issues.map((i) => i.message);
};

describe("deploy controller: Node.js", () => {
    it("pins an exact patch release of the official image, of an LTS line still supported today", () => {
        const m = /^docker\.io\/library\/node:(\d+)\.(\d+)\.(\d+)-bookworm-slim$/.exec(CONTROLLER_NODE_IMAGE);
        assert.ok(m, CONTROLLER_NODE_IMAGE);
        const major = Number(m[1]);
        assert.equal(major, CONTROLLER_NODE_MAJOR);
        assert.ok(LTS_END_OF_LIFE[major], `Node ${major} is not an LTS line`);
        assert.ok(new Date() < new Date(LTS_END_OF_LIFE[major]), `Node ${major} left support on ${LTS_END_OF_LIFE[major]}: pin a newer LTS`);
        assert.equal(major, 24);
    });

    it("compiles the bundle for the image's major: one home for the version", () => {
        const tagMajor = /:(\d+)\./.exec(CONTROLLER_NODE_IMAGE)![1];
        assert.equal(BUNDLE_TARGET, `node${tagMajor}`);
    });

    it("defaults deployController.image to the pinned image", () => {
        assert.equal(deployControllerSchema.parse({}).image, CONTROLLER_NODE_IMAGE);
    });

    it("refuses an official node image below the bundle's major, by any of its names, and says what to use", () => {
        for (const image of ["docker.io/library/node:20.20.2-bookworm-slim", "node:22.11.0", "library/node:20", "index.docker.io/library/node:18-alpine"]) {
            const major = /:(\d+)/.exec(image)![1];
            assert.deepEqual(imageProblems(image), [`runs Node.js ${major}, below the 24 the controller bundle is built for: use a node:24.x (or newer) tag`], image);
        }
    });

    it("accepts the same or a newer major, a digest, and a mirror whose tags say nothing about Node", () => {
        for (const image of ["docker.io/library/node:24.21.0-bookworm-slim", "node:26.1.0", "node@sha256:" + "a".repeat(64), "registry.example.com/mirror/node-runtime:20", "node:lts-bookworm-slim"]) {
            assert.deepEqual(imageProblems(image), [], image);
        }
    });
});
