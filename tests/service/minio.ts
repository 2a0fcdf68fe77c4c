// A real MinIO for the service specs: the Go-built server the local tier runs, on a free loopback port
// with a data directory of its own, and mc (the same build the local tier stands in for the client
// image with) with an admin alias `store` on it. Stopped, and its directory removed, by stop().
import assert from "assert/strict";
import { ChildProcess, spawn, spawnSync } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { freePort } from "../../scripts/lib/ports";
import { ensureLocalTools } from "../../scripts/local/tools";

export interface RunningMinio {
    /** The test's scratch directory (MinIO's data is under `data/`). */
    dir: string;
    endpoint: string;
    mc: string;
    rootUser: string;
    rootPassword: string;
    /** Env for mc as the admin (alias `store` is the root user). */
    adminEnv(): NodeJS.ProcessEnv;
    /** Runs mc as the admin; fails the test unless it exits 0; returns stdout. */
    admin(...args: string[]): string;
    stop(): void;
}

export async function startMinio(prefix: string): Promise<RunningMinio> {
    const tools = ensureLocalTools(["minio", "mc"]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const rootUser = `${prefix}-root`.slice(0, 20);
    const rootPassword = randomBytes(16).toString("hex");
    let server: ChildProcess | undefined = spawn(
        tools.minio,
        ["server", path.join(dir, "data"), "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${await freePort()}`],
        { env: { ...process.env, MINIO_ROOT_USER: rootUser, MINIO_ROOT_PASSWORD: rootPassword, MINIO_BROWSER: "off", HOME: dir }, stdio: "ignore" },
    );
    const adminEnv = () => ({ ...process.env, MC_CONFIG_DIR: path.join(dir, "mc-admin") });
    const minio: RunningMinio = {
        dir,
        endpoint,
        mc: tools.mc,
        rootUser,
        rootPassword,
        adminEnv,
        admin(...args) {
            const r = spawnSync(tools.mc, args, { env: adminEnv(), encoding: "utf8" });
            assert.equal(r.status, 0, `mc ${args.join(" ")}: ${r.stderr}${r.stdout}`);
            return r.stdout;
        },
        stop() {
            if (server && server.exitCode === null) server.kill("SIGTERM");
            server = undefined;
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
    try {
        const deadline = Date.now() + 60_000;
        while ((await fetch(`${endpoint}/minio/health/ready`).then((r) => r.status).catch(() => 0)) !== 200) {
            if (Date.now() > deadline) throw new Error("MinIO did not become ready");
            await new Promise((r) => setTimeout(r, 250));
        }
        minio.admin("alias", "set", "store", endpoint, rootUser, rootPassword);
    } catch (e) {
        minio.stop();
        throw e;
    }
    return minio;
}

/** A credentials directory as a mounted AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY Secret. */
export function credentialsDir(dir: string, accessKeyId: string, secretAccessKey: string): string {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "AWS_ACCESS_KEY_ID"), accessKeyId);
    fs.writeFileSync(path.join(dir, "AWS_SECRET_ACCESS_KEY"), secretAccessKey);
    return dir;
}
