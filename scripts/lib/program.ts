// Runs the whole Pulumi program (index.ts) for one stack under the mock runtime and returns what it
// registered. Used by `npm run render` and by the per-stack specs; a program runs once per process.
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, registered, Registered, setStackConfig } from "./mockRuntime";
import { readStackFile } from "./stackFile";

export const ROOT = path.resolve(__dirname, "..", "..");

export interface ProgramRun {
    resources: Registered[];
    stackOutputs: Record<string, unknown>;
}

/** Runs index.ts with the config of `<stackDir>/Pulumi.<stack>.yaml` (stackDir defaults to the project root). */
export async function runProgram(stack: string, options: { seed?: string; stackDir?: string } = {}): Promise<ProgramRun> {
    const { values, secretKeys } = readStackFile(options.stackDir ?? ROOT, stack);
    await installMocks({ stack, seed: options.seed });
    setStackConfig(values, secretKeys); // after setMocks, which creates the config store
    const stackOutputs = (await import(path.join(ROOT, "index"))) as Record<string, unknown>;
    // Resolves once every queued registration has reached the mock monitor.
    await pulumi.runtime.disconnect();
    return { resources: [...registered], stackOutputs };
}
