// A local serving target for running the controller as a plain process without Kubernetes (the
// documented standalone example tests/fixtures/controller/local.example.json, and tests): the served
// state is a JSON file, and applying a version runs a command (e.g. one that fetches the model with
// kserve-storage and restarts MLServer) before the state is recorded.
import { spawn } from "child_process";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "fs";
import { dirname } from "path";
import { targetDescription } from "../config";
import type { CommandTarget } from "../../shared/controllerConfig";
import type { Observed } from "../decide";
import type { Logger } from "../log";
import { Apply, ServingTarget, TargetError } from "./types";

/** The state file's content. */
export interface CommandState {
    readonly version: string;
    readonly artifact: string;
    readonly registeredModel?: string;
    readonly alias?: string;
    readonly appliedAt?: string;
}

export class CommandServingTarget implements ServingTarget {
    readonly canCreate = true;
    readonly description: string;

    constructor(
        private readonly t: CommandTarget,
        private readonly log: Logger,
    ) {
        this.description = targetDescription(t);
    }

    artifactFor(_version: string, storageUri: string): string {
        return storageUri;
    }

    async observe(): Promise<Observed> {
        let text: string;
        try {
            text = readFileSync(this.t.stateFile, "utf8");
        } catch (e) {
            if ((e as NodeJS.ErrnoException).code === "ENOENT") return { exists: false };
            throw new TargetError(`cannot read ${this.t.stateFile}: ${(e as Error).message}`, "target");
        }
        try {
            const s = JSON.parse(text) as CommandState;
            return { exists: true, artifact: s.artifact, version: s.version };
        } catch {
            // A torn or hand-edited file: treat it as serving nothing known, so the next apply rewrites it.
            return { exists: true };
        }
    }

    create(a: Apply): Promise<void> {
        return this.apply(a);
    }

    patch(a: Apply): Promise<void> {
        return this.apply(a);
    }

    private async apply(a: Apply): Promise<void> {
        if (this.t.command) await this.run(this.t.command, a);
        const state: CommandState = { version: a.version, artifact: a.artifact, registeredModel: a.registeredModel, alias: a.alias, appliedAt: new Date().toISOString() };
        mkdirSync(dirname(this.t.stateFile), { recursive: true });
        const tmp = `${this.t.stateFile}.${process.pid}.tmp`;
        writeFileSync(tmp, JSON.stringify(state, null, 2) + "\n");
        renameSync(tmp, this.t.stateFile);
    }

    private run(command: readonly string[], a: Apply): Promise<void> {
        return new Promise((resolve, reject) => {
            const child = spawn(command[0], command.slice(1), {
                stdio: ["ignore", "pipe", "pipe"],
                env: {
                    ...process.env,
                    MODEL_NAME: a.registeredModel,
                    MODEL_ALIAS: a.alias,
                    MODEL_VERSION: a.version,
                    MODEL_SOURCE: a.source,
                    STORAGE_URI: a.storageUri,
                    MODEL_ARTIFACT: a.artifact,
                },
            });
            let tail = "";
            const keep = (d: Buffer) => {
                tail = (tail + d.toString("utf8")).slice(-2000);
            };
            child.stdout.on("data", keep);
            child.stderr.on("data", keep);
            const timer = setTimeout(() => {
                child.kill("SIGKILL");
            }, this.t.timeoutMs);
            child.on("error", (e) => {
                clearTimeout(timer);
                reject(new TargetError(`cannot run ${command[0]}: ${e.message}`, "target"));
            });
            child.on("close", (code, signal) => {
                clearTimeout(timer);
                if (code === 0) {
                    this.log.debug("apply command finished", { command: command[0], output: tail.trim() || undefined });
                    resolve();
                } else {
                    reject(new TargetError(`${command[0]} exited ${signal ? `on ${signal}` : code}: ${tail.trim().slice(-500)}`, "target"));
                }
            });
        });
    }
}
