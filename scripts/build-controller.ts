// npx ts-node scripts/build-controller.ts [--out DIR] [--configmap]
// Bundles the deploy controller (controller/cli.ts + @kubernetes/client-node) with esbuild, exactly as
// DeployController does at `pulumi up`, and writes it to DIR (default .local/controller/):
//   default      DIR/controller.js            run it with `node DIR/controller.js --config FILE`
//   --configmap  DIR/boot.js + controller.js[.gz], the files the ConfigMap volume mounts in the pod
// Prints the sizes (minified, gzip, ConfigMap payload).
import * as fs from "fs";
import * as path from "path";
import { parseArgs } from "util";
import { gzipSync } from "zlib";
import { bundleFiles, CONFIGMAP_BUDGET, controllerBundle } from "../components/deployController/bundle";

function main(): number {
    const { values } = parseArgs({ options: { out: { type: "string" }, configmap: { type: "boolean", default: false } } });
    const out = path.resolve(values.out ?? path.join(__dirname, "..", ".local", "controller"));
    fs.mkdirSync(out, { recursive: true });
    const bundle = controllerBundle();
    const gz = gzipSync(bundle.js, { level: 9 }).length;
    if (values.configmap) {
        const files = bundleFiles(bundle.js);
        for (const [k, v] of Object.entries(files.data)) fs.writeFileSync(path.join(out, k), v);
        for (const [k, v] of Object.entries(files.binaryData)) fs.writeFileSync(path.join(out, k), Buffer.from(v, "base64"));
        const payload = [...Object.values(files.data), ...Object.values(files.binaryData)].reduce((n, v) => n + Buffer.byteLength(v), 0);
        console.log(`wrote ${Object.keys({ ...files.data, ...files.binaryData }).join(", ")} to ${out}; ConfigMap payload ${payload} bytes (${files.compressed ? "gzip + base64 binaryData" : "plain data"})`);
    } else {
        fs.writeFileSync(path.join(out, "controller.js"), bundle.js);
        console.log(`wrote ${path.join(out, "controller.js")}`);
    }
    console.log(`bundle: ${bundle.js.length} bytes minified, ${gz} bytes gzip (ConfigMap budget ${CONFIGMAP_BUDGET}); sha256 ${bundle.sha256}`);
    return 0;
}

process.exit(main());
