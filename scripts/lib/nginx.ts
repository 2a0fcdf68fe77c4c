// A real nginx on loopback that enforces what an AuthIngress asks of ingress-nginx: the same htpasswd
// file and the same proxy settings, translated from the Ingress annotations. Used by the service-tier
// tests and by `npm run local`; nginx runs unprivileged from its own prefix and is stopped by PID.
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { freePort } from "./ports";

const NGINX_BIN = "/usr/sbin/nginx";
const NGINX = "nginx.ingress.kubernetes.io";
/** Unprivileged identity nginx runs as when the tests run as root (Debian's `nobody`/`nogroup`). */
const NOBODY = 65534;

/** Installs nginx and apache2-utils (htpasswd) from Debian if missing; idempotent. */
export function ensureNginx(): void {
    const script = path.resolve(__dirname, "../tools/ensure-apt.sh");
    execFileSync(script, ["nginx", "apache2-utils"], { stdio: ["ignore", "inherit", "inherit"] });
}

/** Annotations with no local meaning: TLS and certificates are not part of the loopback setup. */
const IGNORED = new Set([`${NGINX}/force-ssl-redirect`, `${NGINX}/ssl-redirect`, "cert-manager.io/cluster-issuer", "cert-manager.io/issuer"]);

/**
 * ingress-nginx's rate limits (limit-rps with limit-burst-multiplier, limit-connections), per client
 * address, as the controller renders them: `http`-level zones and `location`-level limits. Rejected
 * requests get 429, the status the platform's controller values set (limit-req/conn-status-code).
 */
function rateLimits(annotations: Readonly<Record<string, string>>, zone: string): { http: string[]; location: string[] } {
    const a = (k: string) => annotations[`${NGINX}/${k}`];
    const http: string[] = [];
    const location: string[] = [];
    const whole = (k: string) => {
        const v = a(k);
        if (v !== undefined && !/^[1-9]\d*$/.test(v)) throw new Error(`nginx: annotation ${NGINX}/${k} must be a positive integer, not ${v}`);
        return v === undefined ? undefined : Number(v);
    };
    const rps = whole("limit-rps");
    const multiplier = whole("limit-burst-multiplier") ?? 5;
    const connections = whole("limit-connections");
    if (rps !== undefined) {
        http.push(`limit_req_zone $binary_remote_addr zone=${zone}_rps:5m rate=${rps}r/s;`);
        location.push(`limit_req zone=${zone}_rps burst=${rps * multiplier} nodelay;`, "limit_req_status 429;");
    }
    if (connections !== undefined) {
        http.push(`limit_conn_zone $binary_remote_addr zone=${zone}_conn:5m;`);
        location.push(`limit_conn ${zone}_conn ${connections};`, "limit_conn_status 429;");
    }
    return { http, location };
}

/** nginx `http`-level directives the annotations need (rate-limit zones, one set per Ingress, as ingress-nginx keeps them). */
export function httpDirectives(annotations: Readonly<Record<string, string>>, zone = "ingress"): string[] {
    return rateLimits(annotations, zone).http;
}

/**
 * nginx `location` directives equivalent to the ingress-nginx annotations of an AuthIngress. Fails on
 * an nginx.ingress.kubernetes.io annotation it cannot mirror, so local and cluster never drift silently.
 */
export function locationDirectives(annotations: Readonly<Record<string, string>>, htpasswdPath: string, zone = "ingress"): string[] {
    const out: string[] = [];
    const a = (k: string) => annotations[`${NGINX}/${k}`];
    if (a("auth-type") !== undefined) {
        if (a("auth-type") !== "basic" || (a("auth-secret-type") ?? "auth-file") !== "auth-file") {
            throw new Error(`nginx: only basic auth with an auth-file Secret is mirrored (got ${a("auth-type")}/${a("auth-secret-type")})`);
        }
        out.push(`auth_basic "${a("auth-realm") ?? "Authentication Required"}";`, `auth_basic_user_file ${htpasswdPath};`);
    }
    const direct: Record<string, (v: string) => string> = {
        "proxy-body-size": (v) => `client_max_body_size ${v};`,
        "proxy-read-timeout": (v) => `proxy_read_timeout ${v}s;`,
        "proxy-send-timeout": (v) => `proxy_send_timeout ${v}s;`,
        "proxy-request-buffering": (v) => `proxy_request_buffering ${v};`,
        "proxy-buffering": (v) => `proxy_buffering ${v};`,
    };
    // ingress-nginx: `deny <cidr>;` per entry of the denylist, answered with 403.
    const denylist = a("denylist-source-range");
    if (denylist !== undefined) out.push(...denylist.split(",").map((cidr) => `deny ${cidr.trim()};`));
    const limits = ["limit-rps", "limit-burst-multiplier", "limit-connections"];
    const handled = new Set(["auth-type", "auth-secret", "auth-secret-type", "auth-realm", "denylist-source-range", ...Object.keys(direct), ...limits].map((k) => `${NGINX}/${k}`));
    for (const [key, value] of Object.entries(annotations)) {
        if (/[\r\n;{}]/.test(value)) throw new Error(`nginx: annotation ${key} has a value nginx would parse as syntax`);
        const short = key.startsWith(`${NGINX}/`) ? key.slice(NGINX.length + 1) : undefined;
        if (short !== undefined && direct[short]) out.push(direct[short](value));
        else if (short !== undefined && !handled.has(key) && !IGNORED.has(key)) throw new Error(`nginx: annotation ${key} is not mirrored locally`);
    }
    return [...out, ...rateLimits(annotations, zone).location];
}

/**
 * One path of an Ingress rule, with that Ingress's annotations: ingress-nginx merges every Ingress of
 * a host into one server, each path a location carrying its own Ingress's settings.
 */
export interface NginxRoute {
    /** The Ingress's name: its rate-limit zones are its own. */
    ingress: string;
    path: string;
    pathType: "Prefix" | "Exact";
    annotations: Readonly<Record<string, string>>;
    /** Port of the upstream on 127.0.0.1. */
    upstreamPort: number;
}

export interface NginxProxyOptions {
    /** Contents of the htpasswd file (the `auth` key of the AuthIngress Secret). */
    htpasswd: string;
    routes: readonly NginxRoute[];
    /** Port to listen on. Defaults to a free one. */
    port?: number;
    /** Addresses to listen on besides 127.0.0.1 (a test network's, for a client outside this host's loopback). */
    extraAddresses?: readonly string[];
    /** Prefix directory, kept after stop (e.g. under .local/). Defaults to a fresh temporary one, removed on stop. */
    dir?: string;
    /** Where nginx's stderr goes (the launcher's log file). Defaults to a pipe read for error messages. */
    stderrFd?: number;
    /** The nginx binary. Defaults to Debian's `/usr/sbin/nginx`. */
    bin?: string;
}

/** ingress-nginx's locations for a path: Prefix `/a` is `= /a` and `/a/` (whole segments only), Exact is `= /a`. */
export function locationsOf(route: Pick<NginxRoute, "path" | "pathType">): string[] {
    if (!/^\/[\w./-]*$/.test(route.path)) throw new Error(`nginx: path ${route.path} is not mirrored locally`);
    if (route.pathType === "Exact") return [`= ${route.path}`];
    if (route.pathType !== "Prefix") throw new Error(`nginx: pathType ${route.pathType} is not mirrored locally`);
    if (route.path === "/") return ["/"];
    const p = route.path.replace(/\/$/, "");
    return [`= ${p}`, `${p}/`];
}

/** Zone names are nginx identifiers: the Ingress name with everything else as `_`. */
const zoneOf = (ingress: string) => `ingress_${ingress.replace(/\W/g, "_")}`;

/** The whole nginx.conf: one server on 127.0.0.1:port (and any extra addresses), every path inside `dir`, no `user` directive. */
export function nginxConf(dir: string, port: number, o: NginxProxyOptions): string {
    const htpasswdPath = path.join(dir, "htpasswd");
    const temp = (n: string) => path.join(dir, "temp", n);
    const byIngress = new Map(o.routes.map((r) => [r.ingress, r.annotations]));
    const locations = o.routes.flatMap((r) =>
        locationsOf(r).flatMap((l) => [
            `    location ${l} {`,
            ...locationDirectives(r.annotations, htpasswdPath, zoneOf(r.ingress)).map((d) => `      ${d}`),
            `      proxy_pass http://127.0.0.1:${r.upstreamPort};`,
            "      proxy_http_version 1.1;",
            // What ingress-nginx sends upstream: the client's address, never one the client claims.
            "      proxy_set_header Host $host;",
            "      proxy_set_header X-Real-IP $remote_addr;",
            "      proxy_set_header X-Forwarded-For $remote_addr;",
            "      proxy_set_header X-Forwarded-Host $host;",
            "      proxy_set_header X-Forwarded-Proto $scheme;",
            "    }",
        ]),
    );
    return [
        "daemon off;",
        "worker_processes 1;",
        `pid ${path.join(dir, "nginx.pid")};`,
        `error_log ${path.join(dir, "error.log")} warn;`,
        "events { worker_connections 128; }",
        "http {",
        `  access_log ${path.join(dir, "access.log")};`,
        `  client_body_temp_path ${temp("body")};`,
        `  proxy_temp_path ${temp("proxy")};`,
        `  fastcgi_temp_path ${temp("fastcgi")};`,
        `  uwsgi_temp_path ${temp("uwsgi")};`,
        `  scgi_temp_path ${temp("scgi")};`,
        "  server_tokens off;",
        ...[...byIngress].flatMap(([ingress, annotations]) => httpDirectives(annotations, zoneOf(ingress))).map((d) => `  ${d}`),
        "  server {",
        ...["127.0.0.1", ...(o.extraAddresses ?? [])].map((a) => `    listen ${a}:${port};`),
        ...locations,
        "  }",
        "}",
        "",
    ].join("\n");
}

export interface RunningProcess {
    pid: number;
    port: number;
    stop(): Promise<void>;
}

export interface RunningNginx extends RunningProcess {
    dir: string;
    htpasswdPath: string;
}

function waitForPort(port: number, child: ChildProcess, timeoutMs: number, describe: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
        const attempt = () => {
            if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`exited (${child.exitCode ?? child.signalCode}): ${describe()}`));
            const sock = net.connect(port, "127.0.0.1");
            sock.once("connect", () => {
                sock.destroy();
                resolve();
            });
            sock.once("error", () => {
                sock.destroy();
                if (Date.now() > deadline) reject(new Error(`not listening on ${port} after ${timeoutMs} ms: ${describe()}`));
                else setTimeout(attempt, 50);
            });
        };
        attempt();
    });
}

/** Sends SIGTERM to the PID, then SIGKILL if it has not exited within `graceMs`. */
function stopByPid(child: ChildProcess, graceMs = 5000): Promise<void> {
    return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
        const timer = setTimeout(() => {
            try {
                process.kill(child.pid!, "SIGKILL");
            } catch {
                /* already gone */
            }
        }, graceMs);
        child.once("exit", () => {
            clearTimeout(timer);
            resolve();
        });
        try {
            process.kill(child.pid, "SIGTERM");
        } catch {
            clearTimeout(timer);
            resolve();
        }
    });
}

/**
 * Starts nginx in the foreground from a fresh temporary prefix. As root it drops to `nobody` before
 * exec (so nginx itself never has privileges and needs no `user` directive); otherwise it runs as
 * the current user. Retries with another port if the chosen one was taken meanwhile.
 */
export async function startNginx(o: NginxProxyOptions): Promise<RunningNginx> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
        const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "mlflow-nginx-"));
        const port = o.port ?? (await freePort());
        const htpasswdPath = path.join(dir, "htpasswd");
        for (const t of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) fs.mkdirSync(path.join(dir, "temp", t), { recursive: true });
        fs.writeFileSync(htpasswdPath, o.htpasswd, { mode: 0o600 });
        fs.writeFileSync(path.join(dir, "nginx.conf"), nginxConf(dir, port, o));
        const asRoot = process.getuid?.() === 0;
        if (asRoot) for (const p of [dir, ...walk(dir)]) fs.chownSync(p, NOBODY, NOBODY);
        const child = spawn(o.bin ?? NGINX_BIN, ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")], {
            stdio: ["ignore", "ignore", o.stderrFd ?? "pipe"],
            ...(asRoot ? { uid: NOBODY, gid: NOBODY } : {}),
        });
        let stderr = "";
        child.stderr?.on("data", (d) => (stderr += d));
        const describe = () => `${stderr}${readIfExists(path.join(dir, "error.log"))}`;
        const stop = async () => {
            await stopByPid(child);
            if (o.dir === undefined) fs.rmSync(dir, { recursive: true, force: true });
        };
        try {
            await waitForPort(port, child, 10_000, describe);
            return { pid: child.pid!, port, dir, htpasswdPath, stop };
        } catch (e) {
            lastError = e;
            await stop();
            if (!/Address already in use/.test(String(e)) || o.port !== undefined) break;
        }
    }
    throw new Error(`nginx did not start: ${lastError}`);
}

/**
 * A tiny HTTP upstream in its own Node process on 127.0.0.1: answers every request with 200 and a
 * JSON echo (method, url, bytes received, whether an Authorization header arrived, the forwarded addresses).
 */
export function startEchoUpstream(): Promise<RunningProcess> {
    const script = `
const http = require("http");
const server = http.createServer((req, res) => {
  let bytes = 0;
  req.on("data", (c) => (bytes += c.length));
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "x-upstream": "echo" });
    res.end(JSON.stringify({ method: req.method, url: req.url, bytes, authorization: req.headers.authorization !== undefined, forwardedFor: req.headers["x-forwarded-for"], realIp: req.headers["x-real-ip"] }));
  });
});
server.listen(0, "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
        let buf = "";
        child.once("exit", (code) => reject(new Error(`upstream exited early (${code})`)));
        child.stdout!.on("data", (d) => {
            buf += d;
            const line = buf.split("\n")[0];
            if (buf.includes("\n")) resolve({ pid: child.pid!, port: Number(line), stop: () => stopByPid(child) });
        });
    });
}

function walk(dir: string): string[] {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const p = path.join(dir, e.name);
        return e.isDirectory() ? [p, ...walk(p)] : [p];
    });
}

function readIfExists(p: string): string {
    try {
        return fs.readFileSync(p, "utf8");
    } catch {
        return "";
    }
}
