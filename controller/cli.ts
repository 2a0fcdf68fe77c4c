// Entry point of the bundled controller (`node controller.js [--config FILE]`): loads the config file
// (--config, else $MLFLOW_DEPLOY_CONTROLLER_CONFIG, else /etc/mlflow-deploy-controller/config.json),
// runs the controller, and stops it gracefully on SIGTERM/SIGINT. A bad config exits 2; after startup
// nothing a dependency does ends the process.
import { readFileSync } from "fs";
import { parseConfig } from "./config";
import { DEFAULT_CONFIG_PATH } from "../shared/controllerConfig";
import { run } from "./index";
import { createLogger } from "./log";

function configPath(argv: string[], env: NodeJS.ProcessEnv): string {
    const i = argv.indexOf("--config");
    if (i >= 0 && argv[i + 1]) return argv[i + 1];
    const eq = argv.find((a) => a.startsWith("--config="));
    if (eq) return eq.slice("--config=".length);
    return env.MLFLOW_DEPLOY_CONTROLLER_CONFIG || DEFAULT_CONFIG_PATH;
}

async function main(): Promise<void> {
    const path = configPath(process.argv.slice(2), process.env);
    let config;
    try {
        config = parseConfig(JSON.parse(readFileSync(path, "utf8")));
    } catch (e) {
        createLogger("error").error("cannot start: bad configuration", { file: path, error: e });
        process.exit(2);
    }
    const log = createLogger(config.logLevel);
    process.on("unhandledRejection", (reason) => log.error("unhandled rejection", { error: reason }));
    process.on("uncaughtException", (e) => log.error("uncaught exception", { error: e, stack: e.stack }));

    const handle = await run({ config, log });
    let stopping = false;
    const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info("shutting down", { signal });
        handle.stop().then(
            () => {
                log.info("stopped");
                process.exit(0);
            },
            (e) => {
                log.error("error while stopping", { error: e });
                process.exit(1);
            },
        );
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((e) => {
    createLogger("error").error("cannot start", { error: e });
    process.exit(1);
});
