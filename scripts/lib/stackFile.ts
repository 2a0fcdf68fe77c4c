// Reads a `Pulumi.<stack>.yaml` file into the flat config the mock runtime takes, the way the CLI would,
// with each `secure:` value replaced by a generated placeholder (the ciphertext is useless offline). A
// file that is not a stack file is a ConfigError naming the file (and the line and column of a YAML
// syntax error); an empty file is fine, as Pulumi takes it.
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { parseDocument } from "yaml";
import { ConfigError, suggestion } from "../../stacks/errors";

export interface StackConfig {
    values: Record<string, unknown>;
    secretKeys: string[];
}

/** The top-level keys of a Pulumi stack file (pulumi/pulumi sdk/go/common/workspace/project.go, ProjectStack). */
const STACK_FILE_KEYS = ["config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"];

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const kindOf = (v: unknown) => (Array.isArray(v) ? "a list" : v === null ? "empty" : typeof v === "object" ? "a mapping" : `a ${typeof v} (${JSON.stringify(v).slice(0, 40)})`);

export function readStackFile(root: string, stack: string): StackConfig {
    const file = path.join(root, `Pulumi.${stack}.yaml`);
    if (!fs.existsSync(file)) throw new ConfigError([`no stack file ${file}: expected one of dev, staging, prod`]);
    const rel = path.relative(process.cwd(), file).startsWith("..") ? file : path.relative(process.cwd(), file);
    const doc = parseDocument(fs.readFileSync(file, "utf8"), { prettyErrors: true });
    if (doc.errors.length > 0) {
        throw new ConfigError(
            doc.errors.map((e) => {
                const at = e.linePos?.[0];
                return `${rel}${at ? `:${at.line}:${at.col}` : ""}: not valid YAML: ${e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")}`;
            }),
        );
    }
    const top = doc.toJS() as unknown;
    if (top === null || top === undefined) return { values: {}, secretKeys: [] };
    if (!isMapping(top)) throw new ConfigError([`${rel}: a stack file is a mapping with a \`config:\` mapping at the top level, not ${kindOf(top)}`]);
    const problems: string[] = [];
    for (const key of Object.keys(top).filter((k) => !STACK_FILE_KEYS.includes(k))) {
        const near = suggestion(key, STACK_FILE_KEYS);
        problems.push(`${rel}: unknown top-level key \`${key}\`${near ? ` (did you mean \`${near}\`?)` : ""}; a stack file holds ${STACK_FILE_KEYS.map((k) => `\`${k}\``).join(", ")}`);
    }
    const config = top.config ?? {};
    if (!isMapping(config)) problems.push(`${rel}: \`config:\` must be a mapping of keys such as \`mlflow-platform:namespace: mlflow\`, not ${kindOf(config)}`);
    if (problems.length) throw new ConfigError(problems);

    const values: Record<string, unknown> = {};
    const secretKeys: string[] = [];
    for (const [key, value] of Object.entries(config as Record<string, unknown>)) {
        if (isMapping(value) && "secure" in value) {
            values[key] = `placeholder-${randomBytes(12).toString("hex")}`;
            secretKeys.push(key);
        } else {
            values[key] = value;
        }
    }
    return { values, secretKeys };
}
