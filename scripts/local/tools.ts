// What `npm run local` runs, installed on first use by scripts/tools/install-local.sh (pinned, cached
// outside the clone, idempotent) and located through its --print-env output.
import { spawnSync } from "child_process";
import * as path from "path";
import { parsePrintEnv } from "../lib/printEnv";
import { ROOT } from "../lib/program";
import type { ToolPaths } from "./mapping";

export const INSTALL_SCRIPT = path.join(ROOT, "scripts", "tools", "install-local.sh");

export type ToolPart = "apt" | "minio" | "mc" | "mlflow" | "mlflow-previous" | "mlserver" | "kserve-storage" | "chromium";
export const PLATFORM_PARTS: ToolPart[] = ["apt", "minio", "mc", "mlflow", "mlserver", "kserve-storage"];

export interface LocalTools extends ToolPaths {
    cache: string;
    minio: string;
    mc: string;
    nginx: string;
    prometheus: string;
    promtool: string;
    chromium: string;
    kserveStorageVenv: string;
    /** Pinned module versions MinIO and mc were built from. */
    versions: { minio: string; mc: string };
}

/** Parses the KEY=VALUE lines of `install-local.sh --print-env`. */
export function parseToolEnv(stdout: string): LocalTools {
    const env = parsePrintEnv(stdout);
    const need = (k: string) => {
        if (env[k] === undefined) throw new Error(`install-local.sh --print-env did not print ${k}`);
        return env[k];
    };
    return {
        cache: need("CACHE"),
        bin: need("BIN"),
        minio: need("MINIO"),
        mc: need("MC"),
        pgBin: need("PG_BIN"),
        nginx: need("NGINX"),
        prometheus: need("PROMETHEUS"),
        promtool: need("PROMTOOL"),
        chromium: env.CHROMIUM ?? "",
        mlflowVenv: need("MLFLOW_VENV"),
        mlflowPreviousVenv: need("MLFLOW_PREVIOUS_VENV"),
        mlserverVenv: need("MLSERVER_VENV"),
        kserveStorageVenv: need("KSERVE_STORAGE_VENV"),
        versions: { minio: need("MINIO_MODULE_VERSION"), mc: need("MC_MODULE_VERSION") },
    };
}

/**
 * Installs what is missing (first run: Debian packages, Go builds, venvs; later runs: a few stat
 * calls) and returns where everything is. Fails with the installer's own reasons (e.g. not root for apt).
 */
export function ensureLocalTools(parts: ToolPart[] = PLATFORM_PARTS): LocalTools {
    // The installer's progress and reasons go straight to the terminal (a first run takes minutes).
    const r = spawnSync(INSTALL_SCRIPT, ["--print-env", ...parts], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    if (r.status !== 0) {
        throw new Error(`could not install what the local platform needs: ${path.relative(ROOT, INSTALL_SCRIPT)} ${parts.join(" ")} exited ${r.status ?? r.signal} (reasons above)`);
    }
    return parseToolEnv(r.stdout);
}
