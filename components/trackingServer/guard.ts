// The platform's guard MLflow runs as its app (guard/mlflow_platform_guard.py explains the rules): the
// module and the entry point MLflow finds it by, as ConfigMap files mounted on PYTHONPATH, so the stock
// image runs it and no image is built.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";

/** The name `mlflow server --app-name` looks up in the `mlflow.app` entry point group. */
export const GUARD_APP_NAME = "mlflow-platform-guard";
/** Where the files are mounted; on the server's PYTHONPATH. */
export const GUARD_DIR = "/opt/mlflow-platform/python";
const MODULE = "mlflow_platform_guard";
const DIST_INFO = `${MODULE}-1.0.dist-info`;

/** ConfigMap keys (flat) and the paths they are mounted at (a dist-info folder is what importlib.metadata reads). */
export function guardFiles(): { data: Record<string, string>; items: { key: string; path: string }[]; sha256: string } {
    const data = {
        [`${MODULE}.py`]: fs.readFileSync(path.join(__dirname, "guard", `${MODULE}.py`), "utf8"),
        METADATA: `Metadata-Version: 2.1\nName: ${GUARD_APP_NAME}\nVersion: 1.0\n`,
        "entry_points.txt": `[mlflow.app]\n${GUARD_APP_NAME} = ${MODULE}:app\n`,
    };
    const items = [
        { key: `${MODULE}.py`, path: `${MODULE}.py` },
        { key: "METADATA", path: `${DIST_INFO}/METADATA` },
        { key: "entry_points.txt", path: `${DIST_INFO}/entry_points.txt` },
    ];
    const sha256 = createHash("sha256").update(JSON.stringify(data)).digest("hex");
    return { data, items, sha256 };
}
