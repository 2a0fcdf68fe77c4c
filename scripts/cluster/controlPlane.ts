// A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler at the pinned version (scripts/tools/kubernetes.env), built by
// scripts/tools/install-kubernetes.sh. Everything lives under one directory: the PKI (a CA made with
// openssl, the serving certificate, the service-account signing key), the token file, etcd's data,
// kubeconfigs, logs and PID files. Ports are picked free (and kept in ports.json while they stay free),
// so two runs on one machine coexist. Stopped by PID: SIGTERM, a grace period, then SIGKILL (the
// apiserver closes its port at once but can take 40 s to exit).
// Used by the cluster tier (tests/cluster/) and `npm run local`. No node agent yet: Pods stay Pending.
import { spawnSync } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { freePort } from "../lib/ports";
import { parsePrintEnv } from "../lib/printEnv";
import { KubeAccess, KubeClient } from "./kubeClient";
import { Managed, portIsFree, Supervisor, tail, waitUntil } from "../local/supervisor";

const ROOT = path.resolve(__dirname, "..", "..");
export const KUBERNETES_INSTALL_SCRIPT = path.join(ROOT, "scripts", "tools", "install-kubernetes.sh");

export interface KubernetesTools {
    cache: string;
    version: string;
    etcdVersion: string;
    etcd: string;
    kubeApiserver: string;
    kubeControllerManager: string;
    kubeScheduler: string;
    kubectl: string;
}

/** Parses the KEY=VALUE lines of `install-kubernetes.sh --print-env`. */
export function parseKubernetesToolEnv(stdout: string): KubernetesTools {
    const env = parsePrintEnv(stdout);
    const need = (k: string) => {
        if (env[k] === undefined) throw new Error(`install-kubernetes.sh --print-env did not print ${k}`);
        return env[k];
    };
    return {
        cache: need("CACHE"),
        version: need("KUBERNETES_VERSION"),
        etcdVersion: need("ETCD_VERSION"),
        etcd: need("ETCD"),
        kubeApiserver: need("KUBE_APISERVER"),
        kubeControllerManager: need("KUBE_CONTROLLER_MANAGER"),
        kubeScheduler: need("KUBE_SCHEDULER"),
        kubectl: need("KUBECTL"),
    };
}

/**
 * Starts the control plane's build in the background when it is not built yet, and returns at once
 * (a cold build is about 1,000 CPU-seconds: start it before the other installs).
 */
export function startKubernetesBuild(): void {
    spawnSync(KUBERNETES_INSTALL_SCRIPT, ["--background"], { stdio: ["ignore", "ignore", "inherit"] });
}

/** The built binaries; waits for a build in progress (the installer's lock), builds what is missing. */
export function ensureKubernetesTools(): KubernetesTools {
    const r = spawnSync(KUBERNETES_INSTALL_SCRIPT, ["--print-env"], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    if (r.status !== 0) {
        throw new Error(`could not build the Kubernetes control plane: ${path.relative(ROOT, KUBERNETES_INSTALL_SCRIPT)} exited ${r.status ?? r.signal} (reasons above)`);
    }
    return parseKubernetesToolEnv(r.stdout);
}

export interface ControlPlaneOptions {
    /** Directory for the PKI, tokens, etcd data, kubeconfigs, logs and PID files. */
    dir: string;
    tools?: KubernetesTools;
    log?: (line: string) => void;
    signal?: AbortSignal;
    /** Start kube-controller-manager and kube-scheduler too. Default true. */
    controllers?: boolean;
    /** etcd without fsync: for a throwaway test cluster, never for data that should survive. */
    ephemeral?: boolean;
    /**
     * Resources (`group/resource`, e.g. `serving.kserve.io/inferenceservices`) whose writes the apiserver's
     * audit log records with their request bodies (auditWrites reads them back).
     */
    auditWrites?: string[];
}

/** A write to an audited resource, as the API server's audit log records it. */
export interface AuditedWrite {
    verb: string;
    user: string;
    /** Path of the request URI, and its query (fieldManager, force, dryRun). */
    path: string;
    query: Record<string, string>;
    body: any;
    code: number;
    /** When the API server received it (ms since the epoch). */
    at: number;
}

/** The service IP range; its first address is the `kubernetes` Service's, a SAN of the serving cert. */
const SERVICE_CIDR = "10.0.0.0/24";
const SERVICE_IP = "10.0.0.1";
const ISSUER = "https://kubernetes.default.svc.cluster.local";
const PORT_KEYS = ["etcd-client", "etcd-peer", "etcd-metrics", "apiserver", "controller-manager", "scheduler"] as const;
type PortKey = (typeof PORT_KEYS)[number];

export class ControlPlane {
    readonly processes: Partial<Record<"etcd" | "apiserver" | "controller-manager" | "scheduler", Managed>> = {};
    private stopped = false;

    private constructor(
        readonly dir: string,
        readonly tools: KubernetesTools,
        readonly ports: Record<PortKey, number>,
        readonly access: KubeAccess,
        private readonly supervisor: Supervisor,
        private readonly options: ControlPlaneOptions,
    ) {}

    /** The admin kubeconfig (user `admin` in `system:masters`). */
    get kubeconfig(): string {
        return path.join(this.dir, "kubeconfig");
    }
    get server(): string {
        return this.access.server;
    }
    get logs(): string {
        return path.join(this.dir, "logs");
    }
    /** The API server's serving certificate and key (PEM files; SANs 127.0.0.1 and the Service's names). */
    get servingCertificate(): { certFile: string; keyFile: string } {
        return { certFile: path.join(this.dir, "pki", "apiserver.crt"), keyFile: path.join(this.dir, "pki", "apiserver.key") };
    }

    /** A client with the admin token. */
    client(access: Partial<KubeAccess> = {}): KubeClient {
        return new KubeClient({ ...this.access, ...access });
    }

    /** kubectl against this control plane (admin kubeconfig unless `kubeconfig` is given). */
    kubectl(args: string[], o: { input?: string; kubeconfig?: string } = {}): { status: number | null; stdout: string; stderr: string } {
        const r = spawnSync(this.tools.kubectl, ["--kubeconfig", o.kubeconfig ?? this.kubeconfig, ...args], { encoding: "utf8", input: o.input, maxBuffer: 64 << 20 });
        return { status: r.status, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : "") };
    }

    /** A token of a ServiceAccount (TokenRequest, as the kubelet projects it), valid `seconds`. */
    async serviceAccountToken(namespace: string, name: string, seconds = 600): Promise<string> {
        const c = this.client();
        try {
            const r = await c.call("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
                apiVersion: "authentication.k8s.io/v1",
                kind: "TokenRequest",
                spec: { audiences: [ISSUER], expirationSeconds: seconds },
            });
            return r.body.status.token;
        } finally {
            c.close();
        }
    }

    /** Writes a kubeconfig for another identity (e.g. a ServiceAccount token) and returns its path. */
    writeKubeconfig(name: string, token: string): string {
        const file = path.join(this.dir, `${name}.kubeconfig`);
        fs.writeFileSync(file, kubeconfigYaml(this.server, this.access.ca, name, token), { mode: 0o600 });
        return file;
    }

    static async start(options: ControlPlaneOptions): Promise<ControlPlane> {
        const started = Date.now();
        const dir = path.resolve(options.dir);
        const log = options.log ?? (() => undefined);
        // Owner-only, but only this directory: parents made on the way keep the default mode (the local
        // platform's data/ must stay searchable for PostgreSQL's own user).
        fs.mkdirSync(path.dirname(dir), { recursive: true });
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
        const tools = options.tools ?? ensureKubernetesTools();
        const supervisor = new Supervisor(path.join(dir, "logs"), path.join(dir, "pids"));
        for (const s of await supervisor.stopLeftovers(dir)) log(`stopped ${s}, left running by an earlier run`);
        const pki = makePki(dir);
        const ports = await pickPorts(dir);
        const tokens = { admin: secret(), controllerManager: secret(), scheduler: secret() };
        // token,user,uid,"groups": the admin is in system:masters; the controller-manager and scheduler
        // users are the ones the default RBAC roles (system:kube-controller-manager, ...) are bound to.
        fs.writeFileSync(
            path.join(dir, "tokens.csv"),
            [
                `${tokens.admin},admin,admin,"system:masters"`,
                `${tokens.controllerManager},system:kube-controller-manager,system:kube-controller-manager`,
                `${tokens.scheduler},system:kube-scheduler,system:kube-scheduler`,
                "",
            ].join("\n"),
            { mode: 0o600 },
        );
        const ca = fs.readFileSync(pki.caCrt, "utf8");
        const server = `https://127.0.0.1:${ports.apiserver}`;
        const access = { server, ca, token: tokens.admin };
        fs.writeFileSync(path.join(dir, "kubeconfig"), kubeconfigYaml(server, ca, "admin", tokens.admin), { mode: 0o600 });
        const cmKubeconfig = path.join(dir, "controller-manager.kubeconfig");
        const schedKubeconfig = path.join(dir, "scheduler.kubeconfig");
        fs.writeFileSync(cmKubeconfig, kubeconfigYaml(server, ca, "system:kube-controller-manager", tokens.controllerManager), { mode: 0o600 });
        fs.writeFileSync(schedKubeconfig, kubeconfigYaml(server, ca, "system:kube-scheduler", tokens.scheduler), { mode: 0o600 });

        const cp = new ControlPlane(dir, tools, ports, access, supervisor, options);
        try {
            await cp.bringUp(pki, cmKubeconfig, schedKubeconfig);
        } catch (e) {
            await cp.stop();
            throw e;
        }
        log(`kubernetes ${tools.version}: API server ${server} ready in ${((Date.now() - started) / 1000).toFixed(1)} s (kubeconfig ${cp.kubeconfig})`);
        return cp;
    }

    private async bringUp(pki: Pki, cmKubeconfig: string, schedKubeconfig: string): Promise<void> {
        const { dir, tools, ports, supervisor } = this;
        const env = { PATH: "/usr/bin:/bin", HOME: dir };
        const signal = this.options.signal;
        const etcdData = path.join(dir, "etcd");
        const peer = `http://127.0.0.1:${ports["etcd-peer"]}`;
        const client = `http://127.0.0.1:${ports["etcd-client"]}`;
        this.processes.etcd = supervisor.start(
            "etcd",
            {
                argv: [
                    tools.etcd,
                    "--name=local",
                    `--data-dir=${etcdData}`,
                    `--listen-client-urls=${client}`,
                    `--advertise-client-urls=${client}`,
                    `--listen-peer-urls=${peer}`,
                    `--initial-advertise-peer-urls=${peer}`,
                    `--initial-cluster=local=${peer}`,
                    `--listen-metrics-urls=http://127.0.0.1:${ports["etcd-metrics"]}`,
                    "--log-level=warn",
                    ...(this.options.ephemeral ? ["--unsafe-no-fsync"] : []),
                ],
                env,
                cwd: dir,
            },
            { graceMs: 10_000 },
        );
        await waitUntil("etcd", async () => (await (await fetch(`${client}/health`, { signal: AbortSignal.timeout(3000) })).json()).health === "true", 60_000, () => tail(this.processes.etcd!.logFile), signal);

        this.processes.apiserver = supervisor.start(
            "kube-apiserver",
            {
                argv: [
                    tools.kubeApiserver,
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    `--secure-port=${ports.apiserver}`,
                    `--etcd-servers=${client}`,
                    `--tls-cert-file=${pki.serverCrt}`,
                    `--tls-private-key-file=${pki.serverKey}`,
                    `--client-ca-file=${pki.caCrt}`,
                    `--token-auth-file=${path.join(dir, "tokens.csv")}`,
                    `--service-account-key-file=${pki.saPub}`,
                    `--service-account-signing-key-file=${pki.saKey}`,
                    `--service-account-issuer=${ISSUER}`,
                    `--service-cluster-ip-range=${SERVICE_CIDR}`,
                    "--authorization-mode=Node,RBAC",
                    "--allow-privileged=false",
                    "--profiling=false",
                    `--cert-dir=${path.join(dir, "certs", "apiserver")}`,
                    ...this.auditFlags(),
                ],
                env,
                cwd: dir,
            },
            { graceMs: 10_000 },
        );
        const c = this.client();
        try {
            await waitUntil("kube-apiserver /readyz", async () => (await c.request("GET", "/readyz")).status === 200, 180_000, () => tail(this.processes.apiserver!.logFile), signal);
        } finally {
            c.close();
        }
        if (this.options.controllers === false) return;

        const delegated = (kubeconfig: string) => [`--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`];
        this.processes["controller-manager"] = supervisor.start(
            "kube-controller-manager",
            {
                argv: [
                    tools.kubeControllerManager,
                    ...delegated(cmKubeconfig),
                    "--bind-address=127.0.0.1",
                    `--secure-port=${ports["controller-manager"]}`,
                    `--cert-dir=${path.join(dir, "certs", "controller-manager")}`,
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    `--service-account-private-key-file=${pki.saKey}`,
                    `--root-ca-file=${pki.caCrt}`,
                    `--cluster-signing-cert-file=${pki.caCrt}`,
                    `--cluster-signing-key-file=${pki.caKey}`,
                    `--service-cluster-ip-range=${SERVICE_CIDR}`,
                ],
                env,
                cwd: dir,
            },
            { graceMs: 10_000 },
        );
        this.processes.scheduler = supervisor.start(
            "kube-scheduler",
            {
                argv: [
                    tools.kubeScheduler,
                    ...delegated(schedKubeconfig),
                    "--bind-address=127.0.0.1",
                    `--secure-port=${ports.scheduler}`,
                    "--leader-elect=false",
                ],
                env,
                cwd: dir,
            },
            { graceMs: 10_000 },
        );
    }

    get auditLog(): string {
        return path.join(this.dir, "audit.log");
    }

    /** The audit policy for `auditWrites`: request bodies of writes to those resources, nothing else. */
    private auditFlags(): string[] {
        const audited = this.options.auditWrites ?? [];
        if (!audited.length) return [];
        const policy = {
            apiVersion: "audit.k8s.io/v1",
            kind: "Policy",
            omitStages: ["RequestReceived"],
            rules: [
                ...audited.map((r) => {
                    const [group, resource] = r.includes("/") ? r.split("/") : ["", r];
                    return { level: "Request", verbs: ["create", "update", "patch", "delete"], resources: [{ group, resources: [resource] }] };
                }),
                { level: "None" },
            ],
        };
        const file = path.join(this.dir, "audit-policy.json");
        fs.writeFileSync(file, JSON.stringify(policy, null, 2) + "\n");
        return [`--audit-policy-file=${file}`, `--audit-log-path=${this.auditLog}`, "--audit-log-format=json", "--audit-log-mode=blocking"];
    }

    /** The audited writes (see `auditWrites`), oldest first; only successful ones with `onlySuccessful`. */
    auditedWrites(onlySuccessful = false): AuditedWrite[] {
        if (!fs.existsSync(this.auditLog)) return [];
        const out: AuditedWrite[] = [];
        for (const line of fs.readFileSync(this.auditLog, "utf8").split("\n")) {
            if (!line.trim()) continue;
            const e = JSON.parse(line);
            if (e.stage !== "ResponseComplete") continue;
            const url = new URL(e.requestURI, "https://x");
            const w: AuditedWrite = {
                verb: e.verb,
                user: e.user?.username ?? "",
                path: url.pathname,
                query: Object.fromEntries(url.searchParams),
                body: e.requestObject,
                code: e.responseStatus?.code ?? 0,
                at: Date.parse(e.requestReceivedTimestamp),
            };
            if (!onlySuccessful || (w.code >= 200 && w.code < 300)) out.push(w);
        }
        return out;
    }

    /**
     * Waits until the controller-manager has made a namespace's `default` ServiceAccount: a Pod is only
     * admitted once its ServiceAccount exists.
     */
    async waitForServiceAccount(namespace: string, name = "default", timeoutMs = 120_000): Promise<void> {
        const c = this.client();
        try {
            await waitUntil(
                `ServiceAccount ${namespace}/${name}`,
                async () => (await c.request("GET", `/api/v1/namespaces/${namespace}/serviceaccounts/${name}`)).status === 200,
                timeoutMs,
                () => (this.processes["controller-manager"] ? tail(this.processes["controller-manager"].logFile) : "(no controller-manager)"),
                this.options.signal,
            );
        } finally {
            c.close();
        }
    }

    /** Stops the scheduler, controller-manager, apiserver, then etcd, each by PID (SIGTERM, grace, SIGKILL). */
    async stop(): Promise<void> {
        if (this.stopped) return;
        this.stopped = true;
        await this.supervisor.stopAll();
    }
}

interface Pki {
    caKey: string;
    caCrt: string;
    serverKey: string;
    serverCrt: string;
    saKey: string;
    saPub: string;
}

function openssl(args: string[], cwd: string): void {
    const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
    if (r.error) throw new Error(`openssl is needed for the control plane's certificates: ${r.error.message} (apt-get install openssl)`);
    if (r.status !== 0) throw new Error(`openssl ${args.slice(0, 2).join(" ")} failed: ${r.stderr.trim()}`);
}

/** The CA, the apiserver's serving certificate and the service-account key pair; made once per directory. */
function makePki(dir: string): Pki {
    const pkiDir = path.join(dir, "pki");
    const p = (f: string) => path.join(pkiDir, f);
    const pki: Pki = { caKey: p("ca.key"), caCrt: p("ca.crt"), serverKey: p("apiserver.key"), serverCrt: p("apiserver.crt"), saKey: p("sa.key"), saPub: p("sa.pub") };
    if (Object.values(pki).every((f) => fs.existsSync(f))) return pki;
    fs.rmSync(pkiDir, { recursive: true, force: true });
    fs.mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
    openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=mlflow-platform-local-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"], pkiDir);
    openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver"], pkiDir);
    const sans = ["IP:127.0.0.1", `IP:${SERVICE_IP}`, "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"];
    fs.writeFileSync(p("apiserver.ext"), `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n`);
    openssl(["x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "apiserver.crt", "-days", "3650", "-extfile", "apiserver.ext"], pkiDir);
    openssl(["genrsa", "-out", "sa.key", "2048"], pkiDir);
    openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pkiDir);
    for (const f of fs.readdirSync(pkiDir)) fs.chmodSync(p(f), 0o600);
    return pki;
}

/** Free loopback ports, the same as last time while they stay free (etcd keeps its peer URL in its data). */
async function pickPorts(dir: string): Promise<Record<PortKey, number>> {
    const file = path.join(dir, "ports.json");
    let kept: Partial<Record<PortKey, number>> = {};
    try {
        kept = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch {
        /* first run */
    }
    const ports = {} as Record<PortKey, number>;
    const taken = new Set<number>();
    for (const k of PORT_KEYS) {
        let port = kept[k];
        if (!port || taken.has(port) || !(await portIsFree(port))) {
            do port = await freePort();
            while (taken.has(port));
        }
        taken.add(port);
        ports[k] = port;
    }
    fs.writeFileSync(file, JSON.stringify(ports, null, 2) + "\n");
    return ports;
}

const secret = () => randomBytes(24).toString("base64url");

function kubeconfigYaml(server: string, ca: string, user: string, token: string): string {
    return JSON.stringify(
        {
            apiVersion: "v1",
            kind: "Config",
            clusters: [{ name: "local", cluster: { server, "certificate-authority-data": Buffer.from(ca).toString("base64") } }],
            users: [{ name: user, user: { token } }],
            contexts: [{ name: "local", context: { cluster: "local", user } }],
            "current-context": "local",
        },
        null,
        2,
    ) + "\n";
}
