// The few things each workload needs beyond the generic pod → process mapping (mapping.ts), stated per
// workload: where a program is told its listen address (a flag, a setting), and the entrypoint logic of
// an image that does more than exec its command (the official postgres image initialises PGDATA).
import * as path from "path";
import { COMPONENT as AUTH_INGRESS } from "../../components/authIngress";
import { SA_DIR } from "../../components/kube";
import { LocalMount, LocalService, ProcessSpec, replaceFlagValue, rewritePaths, rewriteServiceAddresses } from "./mapping";
import type { Container, RenderedStack } from "./stack";

const COMPONENT_LABEL = "app.kubernetes.io/component";

/**
 * The workloads of `kind` that a component owns (its `app.kubernetes.io/component` label), e.g. the
 * database's StatefulSet: found by what they are, not by their image, so a mirrored image still runs.
 */
export function workloadsOf(stack: RenderedStack, kind: string, component: string): { name: string; container: Container }[] {
    return stack
        .find(kind, (o) => (o.metadata as { labels?: Record<string, string> }).labels?.[COMPONENT_LABEL] === component)
        .map((o) => ({ name: o.metadata.name, container: stack.podTemplate(kind, o.metadata.name).spec.containers[0] }));
}

/** The one workload of `kind` a component owns. */
export function workloadOf(stack: RenderedStack, kind: string, component: string): { name: string; container: Container } {
    const found = workloadsOf(stack, kind, component);
    if (found.length !== 1) throw new Error(`expected one ${kind} of component ${component}, found ${found.length}`);
    return found[0];
}

/** Sets `-c key=value` in a postgres command line, replacing the manifest's value of that key. */
export function setPostgresSetting(argv: string[], key: string, value: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "-c" && argv[i + 1]?.startsWith(`${key}=`)) {
            i++;
            continue;
        }
        out.push(argv[i]);
    }
    return [...out, "-c", `${key}=${value}`];
}

/** Where the postgres image's libpq and server put the socket (its `/var/run/postgresql` volume). */
export const POSTGRES_SOCKET_DIR = "/var/run/postgresql";

/**
 * PostgreSQL on loopback: the container's settings (fsync, synchronous_commit, full_page_writes,
 * max_connections) as given, `listen_addresses=*` narrowed to 127.0.0.1, the Service's loopback port,
 * and the socket in the local stand-in of the image's socket volume, usable by its owner only (on this
 * machine other users share the filesystem, which no one does with a pod's volume).
 */
export function postgresServer(spec: ProcessSpec, port: number, socketDir: string): ProcessSpec {
    let argv = setPostgresSetting(spec.argv, "listen_addresses", "127.0.0.1");
    argv = setPostgresSetting(argv, "port", String(port));
    argv = setPostgresSetting(argv, "unix_socket_directories", socketDir);
    argv = setPostgresSetting(argv, "unix_socket_permissions", "0700");
    return { ...spec, argv };
}

/**
 * A PostgreSQL client command run inside the pod (an exec probe's `pg_isready --port=5432`): the pod's
 * own port, on its own loopback, is the local port the server listens on here.
 */
export function postgresClientPort(argv: string[], podPort: number, localPort: number): string[] {
    const out: string[] = [];
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === `--port=${podPort}`) out.push(`--port=${localPort}`);
        else if ((a === "-p" || a === "--port") && argv[i + 1] === String(podPort)) out.push(a, String(localPort)), i++;
        else out.push(a);
    }
    return out;
}

/** How every connection authenticates, over the socket and TCP alike. */
export const POSTGRES_AUTH = "scram-sha-256";

/**
 * What the official postgres image's entrypoint does before `postgres` on an empty PGDATA:
 * `initdb` with POSTGRES_USER as the superuser and the password from POSTGRES_PASSWORD_FILE. Host
 * connections need the password (scram-sha-256, the image's POSTGRES_HOST_AUTH_METHOD default). The
 * image trusts the socket, which only the container can reach; here the socket is a directory on a
 * machine shared with other users (nginx's workers run as `nobody`), so the socket needs the password
 * too. Every local client connects over TCP with the password anyway. POSTGRES_DB is created once the
 * server is up (postgresCreateDatabase).
 */
export function postgresInitdb(spec: ProcessSpec, pgBin: string): ProcessSpec {
    const e = spec.env;
    for (const k of ["PGDATA", "POSTGRES_USER", "POSTGRES_PASSWORD_FILE"]) if (!e[k]) throw new Error(`postgres container has no ${k}`);
    return {
        ...spec,
        argv: [
            path.join(pgBin, "initdb"),
            `--pgdata=${e.PGDATA}`,
            `--username=${e.POSTGRES_USER}`,
            `--pwfile=${e.POSTGRES_PASSWORD_FILE}`,
            `--auth-local=${POSTGRES_AUTH}`,
            `--auth-host=${POSTGRES_AUTH}`,
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
    };
}

/** pg_hba.conf connection types whose line has an address field (then the method follows it, or its mask). */
const HBA_HOST_TYPES = new Set(["host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"]);

/**
 * pg_hba.conf with every `trust` line made to ask for the password (`method`, default scram-sha-256):
 * a data directory initialised by an earlier version of the local tier (`initdb --auth-local=trust`)
 * trusted every local user on the socket. Only the method field of `local`/`host*` lines changes; other
 * lines, comments and spacing are kept, so running it again changes nothing.
 */
export function requirePasswordAuth(hba: string, method = POSTGRES_AUTH): string {
    return hba
        .split("\n")
        .map((line) => {
            const hash = line.indexOf("#");
            const body = hash === -1 ? line : line.slice(0, hash);
            const fields = [...body.matchAll(/\S+/g)];
            if (!fields.length) return line;
            const type = fields[0][0];
            let at: number;
            if (type === "local") at = 3;
            else if (HBA_HOST_TYPES.has(type)) {
                // An address without a /prefix may be followed by a separate IP mask.
                const address = fields[3]?.[0] ?? "";
                at = /^\d{1,3}(\.\d{1,3}){3}$|^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$/.test(address) ? 5 : 4;
            } else return line; // include directives and the like
            const m = fields[at];
            if (!m || m[0] !== "trust") return line;
            return line.slice(0, m.index) + method + line.slice(m.index! + m[0].length);
        })
        .join("\n");
}

/**
 * psql over TCP with the password, as a client pod connects, creating POSTGRES_DB if it
 * is missing. The name travels as a psql variable, so no quoting of it ends up in a script.
 */
export function postgresCreateDatabase(spec: ProcessSpec, pgBin: string, port: number, password: string): ProcessSpec {
    const script = `${path.join(pgBin, "psql")} -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \\gexec
SQL`;
    return {
        argv: ["/bin/sh", "-c", script],
        env: {
            PATH: spec.env.PATH,
            PGHOST: "127.0.0.1",
            PGPORT: String(port),
            PGUSER: spec.env.POSTGRES_USER,
            PGDATABASE: "postgres",
            PGPASSWORD: password,
            POSTGRES_DB: spec.env.POSTGRES_DB ?? spec.env.POSTGRES_USER,
        },
        cwd: spec.cwd,
    };
}

/** MinIO on loopback: `--address :9000` becomes the Service's loopback port on 127.0.0.1. */
export function minioServer(spec: ProcessSpec, port: number): ProcessSpec {
    return { ...spec, argv: replaceFlagValue(spec.argv, "--address", `127.0.0.1:${port}`) };
}

/**
 * The tracking server on loopback: `--host 0.0.0.0 --port 5000` become 127.0.0.1 and the pod's own
 * loopback port, the `--allowed-hosts` and `--cors-allowed-origins` entries that name the pod's port
 * (`127.0.0.1:5000`, the pod IP's) name the local ports instead (the pod's, which its probes reach, and
 * each in `reachedAt`, the Service ports its clients reach through the Service proxy), as a client
 * reaching a moved port sends it, and the local edge's origins join the edge's public one: the UI's on loopback
 * (`http://127.0.0.1:<ingress port>`) and the public host's on the same port (`http://<host>:<ingress
 * port>`, a browser off this host that resolves the public name to an address the edge listens on).
 */
export function trackingServer(spec: ProcessSpec, port: number, edgeOrigins: readonly string[], reachedAt: readonly number[] = []): ProcessSpec {
    const value = (flag: string) => spec.argv[spec.argv.indexOf(flag) + 1];
    const podPort = value("--port");
    const localPorts = [...new Set([port, ...reachedAt])];
    const onLocalPort = (list: string) => list.split(",").flatMap((h) => (h.endsWith(`:${podPort}`) ? localPorts.map((p) => `${h.slice(0, -podPort.length)}${p}`) : [h]));
    let argv = replaceFlagValue(replaceFlagValue(spec.argv, "--host", "127.0.0.1"), "--port", String(port));
    argv = replaceFlagValue(argv, "--allowed-hosts", onLocalPort(value("--allowed-hosts")).join(","));
    argv = replaceFlagValue(argv, "--cors-allowed-origins", [...onLocalPort(value("--cors-allowed-origins")), ...edgeOrigins].join(","));
    return { ...spec, argv };
}

/** A path of the stack's Ingresses, with its Ingress's annotations and the Service port it routes to. */
export interface IngressRoute {
    ingress: string;
    path: string;
    pathType: "Prefix" | "Exact";
    annotations: Record<string, string>;
    service: { name: string; port: number };
}

/**
 * Every path of every Ingress of the edge's host, as ingress-nginx merges them into one server, and
 * the Secret the authenticating Ingress checks passwords against.
 */
export function ingressRoutes(stack: RenderedStack): { host: string; routes: IngressRoute[]; authSecret: string } {
    const ingresses = stack.find("Ingress", () => true) as any[];
    const hosts = new Set(ingresses.flatMap((i) => i.spec.rules.map((r: any) => r.host)));
    if (hosts.size !== 1) throw new Error(`the local edge serves one host; the Ingresses name ${[...hosts].join(", ") || "none"}`);
    const routes = ingresses.flatMap((i) =>
        i.spec.rules.flatMap((r: any) =>
            r.http.paths.map((p: any) => ({
                ingress: i.metadata.name,
                path: p.path,
                pathType: p.pathType,
                annotations: i.metadata.annotations ?? {},
                service: { name: p.backend.service.name, port: p.backend.service.port.number },
            })),
        ),
    );
    const secrets = new Set(ingresses.map((i) => i.metadata.annotations?.["nginx.ingress.kubernetes.io/auth-secret"]).filter(Boolean));
    if (secrets.size !== 1) throw new Error(`expected one htpasswd Secret among the Ingresses, found ${secrets.size}`);
    return { host: [...hosts][0], routes, authSecret: [...secrets][0] };
}

/** The login the Ingress's credentials Secret holds for its first user (as index.ts uses it for the registry). */
export function ingressLogin(stack: RenderedStack): { user: string; password: string } {
    const htpasswdSecret = ingressRoutes(stack).authSecret;
    const users = stack
        .secretData(htpasswdSecret)
        .auth.split("\n")
        .filter(Boolean)
        .map((l: string) => l.split(":")[0]);
    const credentials = stack.find("Secret", (s) => (s.metadata as any).labels?.[COMPONENT_LABEL] === AUTH_INGRESS && s.metadata.name !== htpasswdSecret);
    for (const c of credentials) {
        const data = stack.secretData(c.metadata.name);
        if (data[users[0]] !== undefined) return { user: users[0], password: data[users[0]] };
    }
    throw new Error(`no credentials Secret holds the password of ingress user ${users[0]}`);
}

/** Every string in a JSON value, mapped by `f` (objects and arrays rebuilt, other values kept). */
function mapStrings(value: unknown, f: (s: string) => string): unknown {
    if (typeof value === "string") return f(value);
    if (Array.isArray(value)) return value.map((v) => mapStrings(v, f));
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapStrings(v, f)]));
    return value;
}

/**
 * The deploy controller's config.json (from its ConfigMap) for a local run: Service addresses (the
 * tracking server, the webhook URL it registers with MLflow) and mounted paths (the webhook secret)
 * mapped like env values; its listeners on 127.0.0.1 at the Service ports' loopback ports; and, instead of
 * the in-cluster API server, the local platform's (its loopback address), reached with the projected
 * service-account token and checked against the projected cluster CA.
 */
export function deployControllerConfig(
    configJson: string,
    ctx: { services: LocalService[]; mounts: LocalMount[]; mountTree?: string; webhookPort?: number; metricsPort: number; kubeApiUrl: string },
): Record<string, any> {
    const cfg = mapStrings(JSON.parse(configJson), (s) => rewritePaths(rewriteServiceAddresses(s, ctx.services), ctx.mounts, ctx.mountTree)) as Record<string, any>;
    if (cfg.kubernetes?.server !== undefined) throw new Error(`the controller's config names an API server (${cfg.kubernetes.server}); locally it talks to the local API server`);
    const tokenFile = rewritePaths(`${SA_DIR}/token`, ctx.mounts);
    const caFile = rewritePaths(`${SA_DIR}/ca.crt`, ctx.mounts);
    if (tokenFile.startsWith(SA_DIR)) throw new Error(`the controller's pod does not mount a service-account token at ${SA_DIR}`);
    if (cfg.webhook && ctx.webhookPort === undefined) throw new Error("the controller receives webhooks but its Service has no webhook port");
    return {
        ...cfg,
        http: { ...cfg.http, host: "127.0.0.1", metricsPort: ctx.metricsPort, ...(ctx.webhookPort !== undefined ? { webhookPort: ctx.webhookPort } : {}) },
        kubernetes: { ...cfg.kubernetes, server: ctx.kubeApiUrl, tokenFile, caFile },
    };
}
