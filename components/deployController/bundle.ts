// How the deploy controller ships without an image: controller/ bundled by esbuild at `pulumi up` into
// one file, carried in an immutable ConfigMap (gzip + binaryData above the ConfigMap size budget) and
// started by a small loader on the pinned official Node image.
import { createHash } from "crypto";
import * as path from "path";
import { gzipSync } from "zlib";
import { CONTROLLER_NODE_MAJOR } from "../images";

/** esbuild's target: the major of the pinned controller image, so the bundle uses what that Node.js runs. */
export const BUNDLE_TARGET = `node${CONTROLLER_NODE_MAJOR}`;
/** Where the ConfigMap (boot loader, bundle, config.json) is mounted. */
export const CODE_DIR = "/opt/mlflow-deploy-controller";
/** Above this the bundle is shipped gzip-compressed in binaryData. */
export const CONFIGMAP_BUDGET = 900 * 1024;
/** ConfigMaps hold at most 1 MiB; 64 KiB of it stay free for config.json (model templates). */
export const CONFIGMAP_LIMIT = 1024 * 1024 - 64 * 1024;

/** The repository root: the bundle's paths are relative to it, never the machine's absolute paths. */
const ROOT = path.join(__dirname, "..", "..");

/** Loads the bundle from the ConfigMap: the plain file, or the gzip one compiled in memory (read-only root). */
export const BOOT_JS = `"use strict";
// mlflow-platform deploy controller loader: runs controller.js, or controller.js.gz (gzip, for bundles
// above the ConfigMap size budget) decompressed and compiled in memory; nothing is written to disk.
const fs = require("fs"), path = require("path"), zlib = require("zlib"), Module = require("module");
const plain = path.join(__dirname, "controller.js");
const gz = plain + ".gz";
if (fs.existsSync(gz)) {
    const m = new Module(plain, module);
    m.filename = plain;
    m.paths = Module._nodeModulePaths(__dirname);
    m._compile(zlib.gunzipSync(fs.readFileSync(gz)).toString("utf8"), plain);
} else {
    require(plain);
}
`;

export interface ControllerBundle {
    /** The minified CommonJS bundle of controller/cli.ts and its dependencies (@kubernetes/client-node). */
    readonly js: Buffer;
    readonly sha256: string;
}

let bundleCache: ControllerBundle | undefined;

/**
 * Bundles controller/ with esbuild (a devDependency, present after `npm ci`) into one file. Deterministic
 * for the same sources and esbuild version, so repeated `pulumi up` runs ship identical bytes.
 */
export function controllerBundle(): ControllerBundle {
    if (bundleCache) return bundleCache;
    let esbuild: typeof import("esbuild");
    try {
        esbuild = require("esbuild");
    } catch {
        throw new Error("DeployController: esbuild is needed to bundle the controller at `pulumi up`; run `npm ci` (with devDependencies)");
    }
    const result = esbuild.buildSync({
        entryPoints: [path.join(ROOT, "controller", "cli.ts")],
        bundle: true,
        platform: "node",
        target: BUNDLE_TARGET,
        format: "cjs",
        minify: true,
        legalComments: "eof",
        write: false,
        logLevel: "silent",
        absWorkingDir: ROOT,
    });
    if (result.errors.length > 0) throw new Error(`DeployController: bundling failed: ${result.errors.map((e) => e.text).join("; ")}`);
    const js = Buffer.from(result.outputFiles[0].contents);
    bundleCache = { js, sha256: createHash("sha256").update(js).digest("hex") };
    return bundleCache;
}

/** The ConfigMap content for a bundle: `controller.js` in `data` when it fits the budget, else `controller.js.gz` in `binaryData`. */
export function bundleFiles(js: Buffer, budget = CONFIGMAP_BUDGET, limit = CONFIGMAP_LIMIT): { data: Record<string, string>; binaryData: Record<string, string>; compressed: boolean; bytes: number } {
    if (js.length + BOOT_JS.length <= budget) {
        return { data: { "boot.js": BOOT_JS, "controller.js": js.toString("utf8") }, binaryData: {}, compressed: false, bytes: js.length };
    }
    // mtime 0 in the gzip header (Node's default), so the bytes depend on the input only.
    const gz = gzipSync(js, { level: 9 });
    if (Math.ceil(gz.length / 3) * 4 + BOOT_JS.length > limit) {
        throw new Error(`DeployController: the gzip-compressed controller bundle (${gz.length} bytes) does not fit a ConfigMap`);
    }
    return { data: { "boot.js": BOOT_JS }, binaryData: { "controller.js.gz": gz.toString("base64") }, compressed: true, bytes: gz.length };
}

