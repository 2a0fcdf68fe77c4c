// The local platform the end-to-end specs run against: started once per test process on a fresh data
// directory (.local/e2e), shared by the spec files (they run in file order), stopped after the last one.
// Also the helpers the specs share: authenticated requests through the ingress, the Python of the
// MLflow venv, the example run.
import assert from "assert/strict";
import { execFile, spawn } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { ROOT } from "../../scripts/lib/program";
import { LocalPlatform } from "../../scripts/local/platform";
import { ensureLocalTools, LocalTools, PLATFORM_PARTS, ToolPart } from "../../scripts/local/tools";

/**
 * Where the specs keep their platforms' data: `.local/` in the clone, unless a parent of the clone is not
 * searchable by others (a `mktemp -d` directory is 0700) while PostgreSQL must run as `postgres` (the
 * launcher is root): then a directory of this clone's own under the system's temp directory.
 */
export function e2eDataRoot(): string {
    const inClone = path.join(ROOT, ".local");
    if (process.getuid?.() !== 0) return inClone;
    for (let d = ROOT; d !== path.dirname(d); d = path.dirname(d)) {
        if ((fs.statSync(d).mode & 0o001) === 0) {
            return path.join(os.tmpdir(), `mlflow-platform-e2e-${createHash("sha256").update(ROOT).digest("hex").slice(0, 12)}`);
        }
    }
    return inClone;
}

export const E2E_DIR = path.join(e2eDataRoot(), "e2e");
export const ARTIFACTS = path.join(ROOT, "test-artifacts");

/**
 * Everything the specs install, installed before any platform runs: an install later, from inside the
 * test process that hosts the platform's node agent (spawnSync), would stall its probes while it runs.
 */
export const E2E_PARTS: ToolPart[] = [...PLATFORM_PARTS, "mlflow-previous", "chromium"];

let platform: LocalPlatform | undefined;
let tools: LocalTools | undefined;
/** Seconds spent in each phase, written to test-artifacts/e2e-timings.json at the end. */
export const timings: Record<string, number> = {};

export async function timed<T>(what: string, f: () => Promise<T> | T): Promise<T> {
    const t = Date.now();
    try {
        return await f();
    } finally {
        timings[what] = Math.round((Date.now() - t) / 100) / 10 + (timings[what] ?? 0);
    }
}

/** The running platform; the first call installs what is missing and starts it on an empty directory. */
let startFailure: Error | undefined;
export async function platformUp(): Promise<LocalPlatform> {
    if (platform) return platform;
    // A platform that did not come up fails every later spec at once, not after its own timeouts.
    if (startFailure) throw startFailure;
    try {
        if (!tools) {
            fs.rmSync(E2E_DIR, { recursive: true, force: true });
            tools = await timed("install", () => ensureLocalTools(E2E_PARTS));
        }
        platform = await timed("start", () => LocalPlatform.start({ dir: E2E_DIR, tools, log: (l) => console.log(`      [local] ${l}`) }));
    } catch (e) {
        startFailure = e as Error;
        throw e;
    }
    return platform;
}

/** Stops the platform (everything it started, by PID); the next platformUp() starts it on the same data. */
export async function platformDown(): Promise<void> {
    const p = platform;
    platform = undefined;
    await p?.stop();
}

after(async function () {
    this.timeout(180_000);
    await platformDown();
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, "e2e-timings.json"), JSON.stringify(timings, null, 2) + "\n");
});

export function basicAuth(user: string, password: string): Record<string, string> {
    return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}

/** A request through the ingress as its user (or with the given headers). */
export async function api(p: LocalPlatform, pathAndQuery: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) {
    const headers = init.headers ?? basicAuth(p.login.user, p.login.password);
    const res = await fetch(`${p.uiUrl}${pathAndQuery}`, {
        method: init.method ?? (init.body === undefined ? "GET" : "POST"),
        headers: { ...headers, ...(init.body !== undefined ? { "content-type": "application/json" } : {}) },
        body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
        signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    let json: any;
    try {
        json = text ? JSON.parse(text) : undefined;
    } catch {
        json = undefined;
    }
    return { status: res.status, text, json };
}

export function python(p: LocalPlatform): string {
    return path.join(p.tools.mlflowVenv, "bin", "python");
}

/** Env of a data scientist's shell pointed at the platform through the ingress. */
export function clientEnv(p: LocalPlatform, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        MLFLOW_TRACKING_URI: p.uiUrl,
        MLFLOW_TRACKING_USERNAME: p.login.user,
        MLFLOW_TRACKING_PASSWORD: p.login.password,
        ...extra,
    };
}

/**
 * Runs a Python script of the MLflow venv to completion; its last stdout line parsed as JSON. Never
 * synchronously: the platform's Kubernetes API stand-in answers the controller from this process's
 * event loop, which must keep turning.
 */
export async function runPython(p: LocalPlatform, args: string[], env: NodeJS.ProcessEnv = clientEnv(p)): Promise<any> {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        execFile(python(p), args, { cwd: ROOT, env, encoding: "utf8", timeout: 600_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
            if (error && typeof error.code !== "number") reject(error);
            else resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
        });
    });
    assert.equal(r.code, 0, `${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.trim().split("\n");
    return JSON.parse(lines[lines.length - 1]);
}

export interface ExampleRun {
    experiment_id: string;
    run_id: string;
    model_id: string;
    registered_model: string;
    version: string;
    alias: string;
}

let example: ExampleRun | undefined;
/** examples/train_wine.py, run once per test process (later specs reuse its run and model). */
export async function wineExample(p: LocalPlatform): Promise<ExampleRun> {
    example ??= await timed("example", () => runPython(p, ["examples/train_wine.py"]));
    return example!;
}

/** Starts a Python script in the background (its stdout and stderr into a log file). */
export function startPython(p: LocalPlatform, args: string[], log: string, env: NodeJS.ProcessEnv = clientEnv(p)) {
    const out = fs.openSync(log, "w");
    const child = spawn(python(p), args, { cwd: ROOT, env, stdio: ["ignore", out, out] });
    fs.closeSync(out);
    return child;
}

/** Rows of scikit-learn's bundled wine dataset as the v2 protocol's named FP64 inputs, and their labels. */
export function wineRows(p: LocalPlatform, n: number): Promise<{ inputs: { name: string; datatype: string; shape: number[]; data: number[] }[]; labels: number[] }> {
    const script = `
import json, sys
from sklearn.datasets import load_wine
x, y = load_wine(return_X_y=True, as_frame=True)
rows = x.sample(n=${n}, random_state=7)
print(json.dumps({"inputs": [{"name": c, "datatype": "FP64", "shape": [${n}], "data": rows[c].tolist()} for c in rows.columns], "labels": y[rows.index].tolist()}))
`;
    return runPython(p, ["-c", script]);
}

/** /proc/net/tcp's little-endian hex IPv4 → dotted quad. */
const ipv4 = (hex: string) => hex.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join(".");
/** /proc/net/tcp6's hex IPv6 (four little-endian words) → `::1`, `::`, an IPv4-mapped address as IPv4, or the hex. */
function ipv6(hex: string): string {
    if (hex === "0".repeat(32)) return "::";
    if (hex === "00000000000000000000000001000000") return "::1";
    if (hex.startsWith("0000000000000000FFFF0000")) return ipv4(hex.slice(24));
    return hex;
}

/** Loopback addresses a local server may listen on. */
export const LOOPBACK = new Set(["127.0.0.1", "::1"]);

/** Addresses listening on a TCP port, from /proc/net/tcp{,6} (e.g. ["127.0.0.1"]). */
export function listenAddresses(port: number): string[] {
    const out: string[] = [];
    for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
        if (!fs.existsSync(file)) continue;
        for (const line of fs.readFileSync(file, "utf8").split("\n").slice(1)) {
            const f = line.trim().split(/\s+/);
            if (f.length < 4 || f[3] !== "0A") continue; // LISTEN
            const [addr, hexPort] = f[1].split(":");
            if (parseInt(hexPort, 16) !== port) continue;
            out.push(addr.length === 8 ? ipv4(addr) : ipv6(addr));
        }
    }
    return out;
}

/** Lists the bucket's keys under a prefix with boto3, as the given S3 user. */
export function s3Keys(p: LocalPlatform, secret: string, bucket: string, prefix: string): Promise<string[]> {
    const creds = p.stack.secretData(secret);
    const script = `
import json, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], region_name="us-east-1")
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[4], Prefix=sys.argv[5]):
    keys += [o["Key"] for o in page.get("Contents", [])]
print(json.dumps(keys))
`;
    const endpoint = `http://127.0.0.1:${p.servicePort("mlflow-minio", 9000)}`;
    return runPython(p, ["-c", script, endpoint, creds.AWS_ACCESS_KEY_ID, creds.AWS_SECRET_ACCESS_KEY, bucket, prefix], { PATH: process.env.PATH });
}
