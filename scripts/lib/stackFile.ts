// Reads a `Pulumi.<stack>.yaml` file into the flat config the mock runtime takes, the way the CLI would,
// with each `secure:` value replaced by a generated placeholder (the ciphertext is useless offline).
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";

export interface StackConfig {
    values: Record<string, unknown>;
    secretKeys: string[];
}

export function readStackFile(root: string, stack: string): StackConfig {
    const file = path.join(root, `Pulumi.${stack}.yaml`);
    if (!fs.existsSync(file)) throw new Error(`no stack file ${file}: expected one of dev, staging, prod`);
    const doc = (parse(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
    const values: Record<string, unknown> = {};
    const secretKeys: string[] = [];
    for (const [key, value] of Object.entries(doc.config ?? {})) {
        if (value && typeof value === "object" && "secure" in value) {
            values[key] = `placeholder-${randomBytes(12).toString("hex")}`;
            secretKeys.push(key);
        } else {
            values[key] = value;
        }
    }
    return { values, secretKeys };
}
