import { createHmac } from "crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as bcrypt from "bcryptjs";
import { deepMerge, HELM_RELEASE, labels } from "./kube";

const COMPONENT = "ingress";
const NGINX = "nginx.ingress.kubernetes.io";

/**
 * The ingress-nginx Helm chart, pinned. 4.15.1 ships controller v1.15.1, the last upstream release
 * (the project reached end of maintenance in March 2026): it carries the IngressNightmare fixes
 * (CVE-2025-1974 and companions, fixed in v1.11.5/v1.12.1), the February 2026 batch
 * (CVE-2026-1580, -24512, -24513, -24514) and CVE-2026-3288 (rewrite-target, fixed in v1.15.0).
 */
export const INGRESS_NGINX_CHART = {
    chart: "ingress-nginx",
    version: "4.15.1",
    controllerVersion: "v1.15.1",
    repo: "https://kubernetes.github.io/ingress-nginx",
} as const;

/** bcrypt cost: nginx runs crypt() on every request (basic auth has no session), so keep it at 10. */
export const BCRYPT_COST = 10;
/** The shortest generated password accepted. */
export const MIN_PASSWORD_LENGTH = 24;

/** Defaults of every optional AuthIngressArgs field. */
export const DEFAULTS = {
    users: [{ name: "mlflow" }] as readonly AuthIngressUser[],
    passwordLength: 32,
    ingressClassName: "nginx",
    realm: "MLflow",
    /**
     * Bounded but above any model a tracking server should proxy: multi-GB checkpoints pass, a runaway
     * client cannot stream without end. "0" (unlimited) stays available through the argument.
     */
    proxyBodySize: "20g",
    /** Per read/write gap, not per transfer: covers the server's S3 hand-off after the last byte. */
    proxyReadTimeoutSeconds: 900,
    proxySendTimeoutSeconds: 900,
    installController: false,
    controllerNamespace: "ingress-nginx",
    controllerReplicas: 2,
    controllerServiceType: "LoadBalancer",
} as const;

export interface AuthIngressUser {
    /**
     * Login name. Letters, digits, `.`, `_` and `-` only (it is also a key of the credentials Secret);
     * never empty and never `:` (the htpasswd field separator). Required.
     */
    readonly name: string;
    /**
     * The password, preferably a Pulumi secret (it is wrapped as one regardless); at most 72 bytes,
     * bcrypt's limit. Defaults to a generated `random.RandomPassword` of `passwordLength` characters.
     */
    readonly password?: pulumi.Input<string>;
}

export interface AuthIngressArgs {
    /** Namespace of the Ingress and its Secrets: the tracking server's namespace. Required. */
    readonly namespace: pulumi.Input<string>;
    /** Public host name clients use, e.g. `mlflow.example.com`. Required. */
    readonly host: pulumi.Input<string>;
    /** Name of the tracking server's Service, wired from `TrackingServer.serviceName`. Required. */
    readonly serviceName: pulumi.Input<string>;
    /** Port of that Service, wired from the TrackingServer Service. Required. */
    readonly servicePort: pulumi.Input<number>;
    /** Basic-auth users. Defaults to one user, `mlflow`, with a generated password. Never empty. */
    readonly users?: readonly AuthIngressUser[];
    /** Length of generated passwords, in characters; at least 24. Defaults to `32`. */
    readonly passwordLength?: number;
    /** IngressClass that serves the Ingress. Defaults to `nginx`. */
    readonly ingressClassName?: pulumi.Input<string>;
    /** Basic-auth realm shown by clients. Defaults to `MLflow`. Letters, digits, space, `.,_-` only. */
    readonly realm?: string;
    /**
     * Largest request body (nginx size: digits plus optional k/m/g; `0` is unlimited). Defaults to
     * `20g`. Keep it ≥ the largest artifact logged through the server in one request.
     */
    readonly proxyBodySize?: string;
    /** Seconds nginx waits between two reads from the tracking server. Defaults to `900`; at least 60. */
    readonly proxyReadTimeoutSeconds?: number;
    /** Seconds nginx waits between two writes to the tracking server. Defaults to `900`; at least 60. */
    readonly proxySendTimeoutSeconds?: number;
    /** Requests per second per client IP and controller replica (`limit-rps`). Defaults to off. */
    readonly rateLimitRps?: number;
    /** Burst as a multiple of `rateLimitRps` (`limit-burst-multiplier`). Defaults to the controller's 5; needs `rateLimitRps`. */
    readonly rateLimitBurstMultiplier?: number;
    /** Concurrent connections per client IP and controller replica (`limit-connections`). Defaults to off. */
    readonly rateLimitConnections?: number;
    /** An existing TLS Secret (`kubernetes.io/tls`) for `host`. Defaults to none. Excludes the issuers. */
    readonly tlsSecretName?: pulumi.Input<string>;
    /** cert-manager ClusterIssuer that issues the certificate into `<name>-ingress-tls`. Defaults to none. */
    readonly tlsClusterIssuer?: string;
    /** cert-manager Issuer (namespaced) that issues the certificate into `<name>-ingress-tls`. Defaults to none. */
    readonly tlsIssuer?: string;
    /**
     * More annotations for the Ingress. Defaults to none. Snippet annotations (`*-snippet`), values
     * with line breaks, and keys this component sets itself are refused.
     */
    readonly extraAnnotations?: Readonly<Record<string, string>>;
    /** Install the ingress-nginx controller as a pinned Helm release. Defaults to `false`. */
    readonly installController?: boolean;
    /** Namespace of that release (created). Defaults to `ingress-nginx`. */
    readonly controllerNamespace?: string;
    /** Controller pods; ≥2 gets a PodDisruptionBudget from the chart. Defaults to `2`. */
    readonly controllerReplicas?: number;
    /** Type of the controller's Service: `LoadBalancer`, `NodePort` or `ClusterIP`. Defaults to `LoadBalancer`. */
    readonly controllerServiceType?: string;
    /**
     * Escape hatch: chart values deep-merged over the component's (arrays replace). Defaults to `{}`.
     * May not re-enable snippet annotations.
     */
    readonly controllerValues?: Readonly<Record<string, unknown>>;
}

/**
 * The authenticating edge: an ingress-nginx Ingress in front of the tracking server with bcrypt
 * basic auth from a Secret, streaming proxy settings and timeouts for multi-GB artifacts, optional
 * TLS (existing Secret or cert-manager) and rate limits, and optionally the controller itself.
 */
export class AuthIngress extends pulumi.ComponentResource {
    /** Secret with the htpasswd file (key `auth`) the Ingress authenticates against. */
    public readonly htpasswdSecretName: pulumi.Output<string>;
    /** Secret with one key per user name whose value is that user's password. */
    public readonly credentialsSecretName: pulumi.Output<string>;
    /** The user names, in the order given. */
    public readonly users: pulumi.Output<string[]>;
    /** User name → password; always a Pulumi secret. */
    public readonly passwords: pulumi.Output<Record<string, string>>;
    public readonly host: pulumi.Output<string>;
    /** What clients set as MLFLOW_TRACKING_URI: `https://<host>` with TLS, `http://<host>` without. */
    public readonly url: pulumi.Output<string>;
    /** The TLS Secret the Ingress serves, or undefined with TLS off. */
    public readonly tlsSecretName: pulumi.Output<string | undefined>;
    /** The Service and port the Ingress routes to. */
    public readonly serviceName: pulumi.Output<string>;
    public readonly servicePort: pulumi.Output<number>;
    public readonly ingress: k8s.networking.v1.Ingress;
    public readonly htpasswdSecret: k8s.core.v1.Secret;
    public readonly credentialsSecret: k8s.core.v1.Secret;
    public readonly controller?: k8s.helm.v3.Release;

    constructor(name: string, args: AuthIngressArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-platform:ingress:AuthIngress", name, {}, opts);
        const users = args.users ?? DEFAULTS.users;
        const passwordLength = args.passwordLength ?? DEFAULTS.passwordLength;
        const realm = args.realm ?? DEFAULTS.realm;
        const proxyBodySize = args.proxyBodySize ?? DEFAULTS.proxyBodySize;
        const readTimeout = args.proxyReadTimeoutSeconds ?? DEFAULTS.proxyReadTimeoutSeconds;
        const sendTimeout = args.proxySendTimeoutSeconds ?? DEFAULTS.proxySendTimeoutSeconds;
        const installController = args.installController ?? DEFAULTS.installController;
        const controllerNamespace = args.controllerNamespace ?? DEFAULTS.controllerNamespace;
        const controllerReplicas = args.controllerReplicas ?? DEFAULTS.controllerReplicas;
        const controllerServiceType = args.controllerServiceType ?? DEFAULTS.controllerServiceType;
        const ingressClassName = args.ingressClassName ?? DEFAULTS.ingressClassName;
        validateArgs(name, { ...args, users, passwordLength, realm, proxyBodySize, readTimeout, sendTimeout, controllerReplicas, controllerServiceType });

        const child = { parent: this };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, name) };

        // Passwords: given ones are wrapped as secrets, missing ones generated. Characters are
        // URL-unreserved, so a password also works in a URL userinfo and unquoted in a shell.
        const passwords = users.map((u) =>
            u.password !== undefined
                ? pulumi.secret(u.password)
                : new random.RandomPassword(
                      `${name}-password-${u.name}`,
                      { length: passwordLength, special: true, overrideSpecial: "-_.", minLower: 1, minUpper: 1, minNumeric: 1 },
                      child,
                  ).result,
        );
        // bcrypt salts are random, so hashing afresh on every `pulumi up` would rewrite the Secret (and
        // roll the controller's auth file) on every run. Each user gets a generated salt seed instead,
        // kept secret in the stack state; the salt is HMAC(seed, user:password), so the same password
        // yields the same hash run after run, a new password a new salt, and equal passwords in
        // different stacks or for different users still differ.
        const saltSeeds = users.map(
            (u) => new random.RandomPassword(`${name}-salt-${u.name}`, { length: 32, special: false }, child).result,
        );
        const htpasswd = pulumi.secret(
            pulumi.all([pulumi.all(passwords), pulumi.all(saltSeeds)]).apply(([pws, seeds]) =>
                htpasswdFile(
                    users.map((u, i) => [u.name, pws[i]] as const),
                    { saltSeeds: Object.fromEntries(users.map((u, i) => [u.name, seeds[i]])) },
                ),
            ),
        );
        this.htpasswdSecret = new k8s.core.v1.Secret(
            `${name}-htpasswd`,
            { metadata: { ...meta, name: `${name}-ingress-htpasswd` }, type: "Opaque", stringData: { auth: htpasswd } },
            child,
        );
        const passwordMap = pulumi.secret(
            pulumi.all(passwords).apply((pws) => Object.fromEntries(users.map((u, i) => [u.name, pws[i]]))),
        );
        this.credentialsSecret = new k8s.core.v1.Secret(
            `${name}-credentials`,
            { metadata: { ...meta, name: `${name}-ingress-credentials` }, type: "Opaque", stringData: passwordMap },
            child,
        );

        if (installController) {
            this.controller = new k8s.helm.v3.Release(
                `${name}-controller`,
                {
                    // A real Helm release, not helm.v4.Chart: the chart's admission webhook certificate
                    // is made by pre-install and post-install hook Jobs, whose order only Helm keeps.
                    name: "ingress-nginx",
                    chart: INGRESS_NGINX_CHART.chart,
                    version: INGRESS_NGINX_CHART.version,
                    repositoryOpts: { repo: INGRESS_NGINX_CHART.repo },
                    namespace: controllerNamespace,
                    ...HELM_RELEASE,
                    timeout: 600,
                    values: pulumi
                        .output(ingressClassName)
                        .apply((cls) =>
                            controllerValues(cls, controllerReplicas, controllerServiceType, args.controllerValues ?? {}, name),
                        ),
                },
                child,
            );
        }

        const tlsOn = args.tlsSecretName !== undefined || args.tlsClusterIssuer !== undefined || args.tlsIssuer !== undefined;
        // With an issuer, cert-manager's ingress-shim creates the Certificate and writes this Secret;
        // its HTTP-01 solver gets an Ingress of its own, so the challenge is not behind basic auth.
        const tlsSecretName: pulumi.Input<string> | undefined = args.tlsSecretName ?? (tlsOn ? `${name}-ingress-tls` : undefined);
        if (!tlsOn) {
            pulumi.log.warn(`AuthIngress ${name}: TLS is off, so basic-auth passwords cross the network in clear text (dev only)`, this);
        }

        const annotations = this.htpasswdSecret.metadata.name.apply((authSecretName) =>
            ingressAnnotations({
                authSecretName,
                realm,
                proxyBodySize,
                proxyReadTimeoutSeconds: readTimeout,
                proxySendTimeoutSeconds: sendTimeout,
                tls: tlsOn,
                tlsClusterIssuer: args.tlsClusterIssuer,
                tlsIssuer: args.tlsIssuer,
                rateLimitRps: args.rateLimitRps,
                rateLimitBurstMultiplier: args.rateLimitBurstMultiplier,
                rateLimitConnections: args.rateLimitConnections,
                extra: args.extraAnnotations,
            }),
        );
        this.ingress = new k8s.networking.v1.Ingress(
            `${name}-ingress`,
            {
                metadata: { ...meta, annotations },
                spec: {
                    ingressClassName,
                    tls: tlsSecretName !== undefined ? [{ hosts: [args.host], secretName: tlsSecretName }] : undefined,
                    rules: [
                        {
                            host: args.host,
                            http: {
                                paths: [
                                    {
                                        path: "/",
                                        pathType: "Prefix",
                                        backend: { service: { name: args.serviceName, port: { number: args.servicePort } } },
                                    },
                                ],
                            },
                        },
                    ],
                },
            },
            // The IngressClass and admission webhook come from the release; no data flows between them.
            { parent: this, dependsOn: this.controller ? [this.controller] : [] },
        );

        this.htpasswdSecretName = this.htpasswdSecret.metadata.name;
        this.credentialsSecretName = this.credentialsSecret.metadata.name;
        this.users = pulumi.output(users.map((u) => u.name));
        this.passwords = passwordMap;
        this.host = pulumi.output(args.host);
        this.url = pulumi.interpolate`${tlsOn ? "https" : "http"}://${args.host}`;
        this.tlsSecretName = pulumi.output(tlsSecretName);
        this.serviceName = pulumi.output(args.serviceName);
        this.servicePort = pulumi.output(args.servicePort);
        this.registerOutputs({
            htpasswdSecretName: this.htpasswdSecretName,
            credentialsSecretName: this.credentialsSecretName,
            users: this.users,
            passwords: this.passwords,
            host: this.host,
            url: this.url,
            tlsSecretName: this.tlsSecretName,
            serviceName: this.serviceName,
            servicePort: this.servicePort,
        });
    }
}

const USER_NAME = /^[A-Za-z0-9._-]+$/;
const SIZE = /^\d+[kKmMgG]?$/;
const REALM = /^[A-Za-z0-9 .,_-]+$/;
const SERVICE_TYPES = ["LoadBalancer", "NodePort", "ClusterIP"];

interface ResolvedArgs extends AuthIngressArgs {
    users: readonly AuthIngressUser[];
    passwordLength: number;
    realm: string;
    proxyBodySize: string;
    readTimeout: number;
    sendTimeout: number;
    controllerReplicas: number;
    controllerServiceType: string;
}

function validateArgs(name: string, a: ResolvedArgs): void {
    const fail = (msg: string): never => {
        throw new Error(`AuthIngress ${name}: ${msg}`);
    };
    if (a.users.length === 0) fail("users must list at least one user");
    const seen = new Set<string>();
    for (const u of a.users) validateUserName(u.name, fail);
    for (const u of a.users) {
        if (seen.has(u.name)) fail(`duplicate user "${u.name}"`);
        seen.add(u.name);
    }
    if (!Number.isInteger(a.passwordLength) || a.passwordLength < MIN_PASSWORD_LENGTH || a.passwordLength > 72) {
        fail(`passwordLength ${a.passwordLength} is invalid: must be an integer from ${MIN_PASSWORD_LENGTH} to 72 (bcrypt's limit)`);
    }
    if (!REALM.test(a.realm)) fail(`realm "${a.realm}" is invalid: letters, digits, space and .,_- only`);
    if (!SIZE.test(a.proxyBodySize)) fail(`proxyBodySize "${a.proxyBodySize}" is invalid: an nginx size such as 20g, 512m or 0 (unlimited)`);
    for (const [key, v] of [["proxyReadTimeoutSeconds", a.readTimeout], ["proxySendTimeoutSeconds", a.sendTimeout]] as const) {
        if (!Number.isInteger(v) || v < 60 || v > 86400) fail(`${key} ${v} is invalid: must be whole seconds from 60 to 86400`);
    }
    for (const [key, v] of [["rateLimitRps", a.rateLimitRps], ["rateLimitConnections", a.rateLimitConnections], ["rateLimitBurstMultiplier", a.rateLimitBurstMultiplier]] as const) {
        if (v !== undefined && (!Number.isInteger(v) || v < 1)) fail(`${key} ${v} is invalid: must be a whole number ≥ 1`);
    }
    if (a.rateLimitBurstMultiplier !== undefined && a.rateLimitRps === undefined) fail("rateLimitBurstMultiplier needs rateLimitRps");
    const tlsModes = [["tlsSecretName", a.tlsSecretName], ["tlsClusterIssuer", a.tlsClusterIssuer], ["tlsIssuer", a.tlsIssuer]].filter(([, v]) => v !== undefined);
    if (tlsModes.length > 1) {
        fail(`TLS comes from one source: give only one of tlsSecretName, tlsClusterIssuer, tlsIssuer (got ${tlsModes.map(([k]) => k).join(" and ")})`);
    }
    for (const [key, v] of [["tlsClusterIssuer", a.tlsClusterIssuer], ["tlsIssuer", a.tlsIssuer]] as const) {
        if (v !== undefined && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v)) fail(`${key} "${v}" is not a valid issuer name`);
    }
    validateExtraAnnotations(a.extraAnnotations ?? {}, fail);
    if (!Number.isInteger(a.controllerReplicas) || a.controllerReplicas < 1) fail(`controllerReplicas ${a.controllerReplicas} is invalid: must be ≥ 1`);
    if (!SERVICE_TYPES.includes(a.controllerServiceType)) {
        fail(`controllerServiceType "${a.controllerServiceType}" is invalid: one of ${SERVICE_TYPES.join(", ")}`);
    }
    if (a.controllerValues !== undefined && !a.installController) fail("controllerValues needs installController: true");
    if (a.controllerValues !== undefined) controllerValues("nginx", a.controllerReplicas, a.controllerServiceType, a.controllerValues, name);
}

function validateUserName(user: string, fail: (msg: string) => never): void {
    if (typeof user !== "string" || user.length === 0) fail("a user name is empty");
    if (user.includes(":")) fail(`user name "${user}" contains ':', the htpasswd field separator`);
    if (!USER_NAME.test(user) || user.length > 253) fail(`user name "${user}" is invalid: letters, digits, '.', '_' and '-' only, at most 253 characters`);
}

/** Annotations the component manages, plus ones that would let requests past basic auth. */
const RESERVED_ANNOTATIONS = new Set([
    ...["auth-type", "auth-secret", "auth-secret-type", "auth-realm", "satisfy", "enable-global-auth"].map((k) => `${NGINX}/${k}`),
    ...["proxy-body-size", "proxy-read-timeout", "proxy-send-timeout", "proxy-request-buffering", "proxy-buffering"].map((k) => `${NGINX}/${k}`),
    ...["limit-rps", "limit-burst-multiplier", "limit-connections", "ssl-redirect", "force-ssl-redirect"].map((k) => `${NGINX}/${k}`),
    "cert-manager.io/cluster-issuer",
    "cert-manager.io/issuer",
]);

function validateExtraAnnotations(extra: Readonly<Record<string, string>>, fail: (msg: string) => never): void {
    for (const [key, value] of Object.entries(extra)) {
        if (/snippet/i.test(key)) {
            fail(
                `annotation "${key}" is a snippet annotation: snippets inject raw nginx configuration ` +
                    "(CVE-2021-25742, CVE-2025-1974) and are never allowed",
            );
        }
        if (RESERVED_ANNOTATIONS.has(key)) fail(`annotation "${key}" is set by AuthIngress; use its typed argument instead`);
        if (typeof value !== "string") fail(`annotation "${key}" must be a string`);
        if (/[\r\n\0]/.test(value)) fail(`annotation "${key}" has a line break in its value, the pattern of nginx config injection`);
    }
}

export interface AnnotationOptions {
    authSecretName: string;
    realm: string;
    proxyBodySize: string;
    proxyReadTimeoutSeconds: number;
    proxySendTimeoutSeconds: number;
    tls: boolean;
    tlsClusterIssuer?: string;
    tlsIssuer?: string;
    rateLimitRps?: number;
    rateLimitBurstMultiplier?: number;
    rateLimitConnections?: number;
    extra?: Readonly<Record<string, string>>;
}

/** The Ingress annotations: ingress-nginx basic auth, streaming proxy, optional TLS, rate limits. */
export function ingressAnnotations(o: AnnotationOptions): Record<string, string> {
    const out: Record<string, string> = {
        [`${NGINX}/auth-type`]: "basic",
        [`${NGINX}/auth-secret`]: o.authSecretName,
        [`${NGINX}/auth-secret-type`]: "auth-file",
        [`${NGINX}/auth-realm`]: o.realm,
        [`${NGINX}/proxy-body-size`]: o.proxyBodySize,
        [`${NGINX}/proxy-read-timeout`]: String(o.proxyReadTimeoutSeconds),
        [`${NGINX}/proxy-send-timeout`]: String(o.proxySendTimeoutSeconds),
        // Stream uploads and downloads instead of spooling multi-GB bodies on the controller's disk.
        [`${NGINX}/proxy-request-buffering`]: "off",
        [`${NGINX}/proxy-buffering`]: "off",
    };
    if (o.tls) out[`${NGINX}/force-ssl-redirect`] = "true";
    if (o.tlsClusterIssuer !== undefined) out["cert-manager.io/cluster-issuer"] = o.tlsClusterIssuer;
    if (o.tlsIssuer !== undefined) out["cert-manager.io/issuer"] = o.tlsIssuer;
    if (o.rateLimitRps !== undefined) out[`${NGINX}/limit-rps`] = String(o.rateLimitRps);
    if (o.rateLimitBurstMultiplier !== undefined) out[`${NGINX}/limit-burst-multiplier`] = String(o.rateLimitBurstMultiplier);
    if (o.rateLimitConnections !== undefined) out[`${NGINX}/limit-connections`] = String(o.rateLimitConnections);
    return { ...o.extra, ...out };
}

/**
 * Values for the ingress-nginx chart: snippets off (controller flag and ConfigMap), annotation
 * validation on with `High` as the highest risk level honoured, admission webhook on and failing
 * closed, 429 for rate-limited requests, metrics on. `overrides` are deep-merged last; the snippet
 * settings are checked again afterwards.
 */
export function controllerValues(
    ingressClassName: string,
    replicas: number,
    serviceType: string,
    overrides: Readonly<Record<string, unknown>>,
    name = "controller",
): Record<string, any> {
    const values = deepMerge(
        {
            controller: {
                replicaCount: replicas,
                minAvailable: 1,
                allowSnippetAnnotations: false,
                enableAnnotationValidations: true,
                ingressClass: ingressClassName,
                ingressClassResource: { name: ingressClassName, enabled: true, default: false, controllerValue: "k8s.io/ingress-nginx" },
                config: {
                    "allow-snippet-annotations": "false",
                    "annotations-risk-level": "High",
                    "strict-validate-path-type": "true",
                    "server-tokens": "false",
                    "limit-req-status-code": "429",
                    "limit-conn-status-code": "429",
                    "ssl-protocols": "TLSv1.2 TLSv1.3",
                },
                admissionWebhooks: {
                    enabled: true,
                    failurePolicy: "Fail",
                    timeoutSeconds: 10,
                    // Certificates come from the chart's certgen hook Jobs; the webhook Service stays in-cluster.
                    patch: { enabled: true },
                    service: { type: "ClusterIP" },
                },
                service: { type: serviceType },
                metrics: { enabled: true, serviceMonitor: { enabled: false } },
                resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } },
            },
            defaultBackend: { enabled: false },
        },
        overrides,
    );
    const c = values.controller ?? {};
    const config = c.config ?? {};
    if (c.allowSnippetAnnotations !== false || String(config["allow-snippet-annotations"]) !== "false") {
        throw new Error(`AuthIngress ${name}: controllerValues may not enable snippet annotations`);
    }
    if (String(config["annotations-risk-level"]).toLowerCase() === "critical") {
        throw new Error(`AuthIngress ${name}: controllerValues may not set annotations-risk-level Critical (it honours snippets)`);
    }
    return values;
}

export interface HtpasswdOptions {
    /**
     * Secret seed per user name. With a seed the salt is HMAC-SHA256(seed, "user:password"), so the
     * hash is reproducible; without one the salt is random (fine for a throwaway file).
     */
    saltSeeds?: Readonly<Record<string, string>>;
    /** bcrypt cost. Defaults to `10`. */
    cost?: number;
}

/**
 * The salt of a reproducible bcrypt hash: 16 bytes of HMAC-SHA256(seed, "user:password") in
 * bcrypt's base64 and `$2y$` form, which nginx (glibc libxcrypt and musl) and Apache's htpasswd read.
 */
export function stableSalt(seed: string, user: string, password: string, cost = BCRYPT_COST): string {
    const bytes = createHmac("sha256", seed).update(`${user}:${password}`).digest().subarray(0, 16);
    return `$2y$${String(cost).padStart(2, "0")}$${bcrypt.encodeBase64(Array.from(bytes), 16)}`;
}

/** One user's bcrypt hash (`$2y$`), reproducible when a seed is given. */
export function bcryptHash(user: string, password: string, saltSeed?: string, cost = BCRYPT_COST): string {
    if (password.length === 0) throw new Error(`htpasswd: the password of "${user}" is empty`);
    // bcrypt ignores everything after 72 bytes, so a longer password would be silently weakened.
    if (bcrypt.truncates(password)) throw new Error(`htpasswd: the password of "${user}" is longer than bcrypt's 72 bytes`);
    const salt = saltSeed !== undefined ? stableSalt(saltSeed, user, password, cost) : bcrypt.genSaltSync(cost).replace(/^\$2b\$/, "$2y$");
    return bcrypt.hashSync(password, salt);
}

/**
 * The contents of an htpasswd file (`user:$2y$10$…` lines, newline-terminated) for [user, password]
 * pairs, as nginx's `auth_basic_user_file` and ingress-nginx's `auth-file` Secret key read it.
 */
export function htpasswdFile(pairs: ReadonlyArray<readonly [string, string]>, options: HtpasswdOptions = {}): string {
    const seen = new Set<string>();
    const fail = (msg: string): never => {
        throw new Error(`htpasswd: ${msg}`);
    };
    return pairs
        .map(([user, password]) => {
            validateUserName(user, fail);
            if (seen.has(user)) fail(`duplicate user "${user}"`);
            seen.add(user);
            return `${user}:${bcryptHash(user, password, options.saltSeeds?.[user], options.cost ?? BCRYPT_COST)}\n`;
        })
        .join("");
}
