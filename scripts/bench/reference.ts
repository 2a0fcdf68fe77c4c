// The reference of `npm run bench`: plain `mlflow server` with its defaults (the same MLflow the platform
// runs, from the local tier's venv), on a loopback port, in a directory of its own.
import * as fs from "fs";
import * as path from "path";
import { freePort } from "../lib/ports";
import { httpStatus, Managed, Supervisor, tail, waitUntil } from "../local/supervisor";

export interface ReferenceServer {
    url: string;
    process: Managed;
}

export async function startMlflowServer(o: { mlflowVenv: string; dir: string; supervisor: Supervisor; name?: string }): Promise<ReferenceServer> {
    const port = await freePort();
    const cwd = path.join(o.dir, o.name ?? "mlflow-server-defaults");
    fs.rmSync(cwd, { recursive: true, force: true });
    fs.mkdirSync(cwd, { recursive: true });
    const argv = [path.join(o.mlflowVenv, "bin", "mlflow"), "server", "--host", "127.0.0.1", "--port", String(port)];
    const process = o.supervisor.start(o.name ?? "mlflow-server-defaults", { argv, env: { PATH: `${path.join(o.mlflowVenv, "bin")}:/usr/bin:/bin`, HOME: cwd }, cwd }, { graceMs: 10_000 });
    const url = `http://127.0.0.1:${port}`;
    await waitUntil("mlflow server (defaults)", async () => (await httpStatus(`${url}/health`)) === 200, 180_000, () => tail(process.logFile));
    await warmStore(url, process);
    return { url, process };
}

/**
 * Until the store answers at once: each of the server's workers opens its store on its first API
 * request (with the default SQLite store, 4 workers at once took 19 s on a loaded 2-core machine), which
 * /health does not touch; so rounds of concurrent searches, until one of them all answers within 1 s.
 */
async function warmStore(url: string, process: Managed): Promise<void> {
    const search = async () => {
        const res = await fetch(`${url}/api/2.0/mlflow/experiments/search?max_results=1`, { signal: AbortSignal.timeout(60_000) });
        await res.arrayBuffer();
        return res.status;
    };
    await waitUntil(
        "mlflow server's store",
        async () => {
            const started = Date.now();
            const codes = await Promise.all(Array.from({ length: 8 }, search));
            return codes.every((c) => c === 200) && Date.now() - started < 1000;
        },
        180_000,
        () => tail(process.logFile),
    );
}
