// The authenticating edge: an ingress-nginx Ingress in front of the tracking server.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { HELM_RELEASE, labels, renamedFrom } from "../kube";
import { htpasswdFile } from "./htpasswd";
import { controllerValues, EDGE_REFUSED_PATHS, INGRESS_NGINX_CHART, ingressAnnotations, refusedAnnotations } from "./nginx";
import type { IngressConfig } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "authIngress";
const APP = "ingress";
/** Length of the generated passwords: well above any guessing budget, within bcrypt's 72 bytes. */
export const PASSWORD_LENGTH = 32;

export interface AuthIngressArgs {
    /** Namespace of the Ingress and its Secrets: the tracking server's namespace. */
    readonly namespace: pulumi.Input<string>;
    readonly config: IngressConfig;
    /** The tracking server's Service and port (TrackingServer.serviceName / servicePort). */
    readonly backend: { readonly serviceName: pulumi.Input<string>; readonly servicePort: pulumi.Input<number> };
    /** Namespace of the ingress-nginx release, when `config.controller.install`. */
    readonly controllerNamespace: string;
    /**
     * More paths of the host, behind the same login, each to a Service of the namespace by name: a
     * served model's v2 API, whose Service KServe makes. The edge declares an ExternalName Service for
     * each, so every backend it routes to is an object of the stack.
     */
    readonly routes?: readonly EdgeRoute[];
}

export interface EdgeRoute {
    /** Names the ExternalName Service (`<name>-edge-<route>`). */
    readonly name: string;
    /** A Prefix path of the host (whole segments). */
    readonly path: string;
    readonly serviceName: string;
    readonly servicePort: number;
}

/** What clients outside the cluster set as MLFLOW_TRACKING_URI: `https://<host>` with TLS, `http://<host>` without. */
export function edgeUrl(c: Pick<IngressConfig, "host" | "tls">): string {
    return `${c.tls !== undefined ? "https" : "http"}://${c.host}`;
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
    /** Answers 403 on the MLflow paths no client outside the cluster may use (EDGE_REFUSED_PATHS). */
    public readonly refusedIngress: k8s.networking.v1.Ingress;
    public readonly htpasswdSecret: k8s.core.v1.Secret;
    public readonly credentialsSecret: k8s.core.v1.Secret;
    public readonly controller?: k8s.helm.v3.Release;

    constructor(name: string, args: AuthIngressArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:AuthIngress`, name, {}, renamedFrom(opts, "mlflow-platform:ingress:AuthIngress"));
        const c = args.config;
        const users = c.users;

        const child = { parent: this };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, APP, name) };

        // Generated passwords. Characters are URL-unreserved, so a password also works in a URL
        // userinfo and unquoted in a shell.
        const passwords = users.map(
            (user) =>
                new random.RandomPassword(
                    `${name}-password-${user}`,
                    { length: PASSWORD_LENGTH, special: true, overrideSpecial: "-_.", minLower: 1, minUpper: 1, minNumeric: 1 },
                    child,
                ).result,
        );
        // bcrypt salts are random, so hashing afresh on every `pulumi up` would rewrite the Secret (and
        // roll the controller's auth file) on every run. Each user gets a generated salt seed instead,
        // kept secret in the stack state; the salt is HMAC(seed, user:password), so the same password
        // yields the same hash run after run, a new password a new salt, and equal passwords in
        // different stacks or for different users still differ.
        const saltSeeds = users.map((user) => new random.RandomPassword(`${name}-salt-${user}`, { length: 32, special: false }, child).result);
        const htpasswd = pulumi.secret(
            pulumi.all([pulumi.all(passwords), pulumi.all(saltSeeds)]).apply(([pws, seeds]) =>
                htpasswdFile(
                    users.map((user, i) => [user, pws[i]] as const),
                    { saltSeeds: Object.fromEntries(users.map((user, i) => [user, seeds[i]])) },
                ),
            ),
        );
        this.htpasswdSecret = new k8s.core.v1.Secret(
            `${name}-htpasswd`,
            { metadata: { ...meta, name: `${name}-ingress-htpasswd` }, type: "Opaque", stringData: { auth: htpasswd } },
            child,
        );
        const passwordMap = pulumi.secret(
            pulumi.all(passwords).apply((pws) => Object.fromEntries(users.map((user, i) => [user, pws[i]]))),
        );
        this.credentialsSecret = new k8s.core.v1.Secret(
            `${name}-credentials`,
            { metadata: { ...meta, name: `${name}-ingress-credentials` }, type: "Opaque", stringData: passwordMap },
            child,
        );

        if (c.controller.install) {
            this.controller = new k8s.helm.v3.Release(
                `${name}-controller`,
                {
                    // A real Helm release, not helm.v4.Chart: the chart's admission webhook certificate
                    // is made by pre-install and post-install hook Jobs, whose order only Helm keeps.
                    name: "ingress-nginx",
                    chart: INGRESS_NGINX_CHART.chart,
                    version: INGRESS_NGINX_CHART.version,
                    repositoryOpts: { repo: INGRESS_NGINX_CHART.repo },
                    namespace: args.controllerNamespace,
                    ...HELM_RELEASE,
                    timeout: 600,
                    values: controllerValues(c),
                },
                child,
            );
        }

        const tlsOn = c.tls !== undefined;
        // With an issuer, cert-manager's ingress-shim creates the Certificate and writes this Secret;
        // its HTTP-01 solver gets an Ingress of its own, so the challenge is not behind basic auth.
        const tlsSecretName = c.tls?.secretName ?? (tlsOn ? `${name}-ingress-tls` : undefined);
        if (!tlsOn) {
            pulumi.log.warn(`AuthIngress ${name}: TLS is off, so basic-auth passwords cross the network in clear text (dev only)`, this);
        }

        const annotations = this.htpasswdSecret.metadata.name.apply((authSecretName) => ingressAnnotations(c, authSecretName));
        const prefix = (path: string, serviceName: pulumi.Input<string>, servicePort: pulumi.Input<number>) => ({
            path,
            pathType: "Prefix",
            backend: { service: { name: serviceName, port: { number: servicePort } } },
        });
        const spec = (paths: ReturnType<typeof prefix>[]) => ({
            ingressClassName: c.className,
            tls: tlsSecretName !== undefined ? [{ hosts: [c.host], secretName: tlsSecretName }] : undefined,
            rules: [{ host: c.host, http: { paths } }],
        });
        const toTracking = (path: string) => prefix(path, args.backend.serviceName, args.backend.servicePort);
        // Each extra route's Service by DNS name: ingress-nginx resolves the ExternalName.
        const routes = (args.routes ?? []).map((r) => {
            const service = new k8s.core.v1.Service(
                `${name}-edge-${r.name}`,
                {
                    metadata: { ...meta, name: `${name}-edge-${r.name}` },
                    spec: { type: "ExternalName", externalName: pulumi.interpolate`${r.serviceName}.${args.namespace}.svc.cluster.local`, ports: [{ name: "http", port: r.servicePort }] },
                },
                child,
            );
            return prefix(r.path, service.metadata.name, r.servicePort);
        });
        // The IngressClass and admission webhook come from the release; no data flows between them.
        const afterController = { parent: this, dependsOn: this.controller ? [this.controller] : [] };
        this.ingress = new k8s.networking.v1.Ingress(`${name}-ingress`, { metadata: { ...meta, annotations }, spec: spec([toTracking("/"), ...routes]) }, afterController);
        // ingress-nginx merges both into one server: these paths get this Ingress's 403 (see EDGE_REFUSED_PATHS for why).
        this.refusedIngress = new k8s.networking.v1.Ingress(
            `${name}-ingress-refused`,
            { metadata: { ...meta, name: `${name}-ingress-refused`, annotations: refusedAnnotations(c) }, spec: spec(EDGE_REFUSED_PATHS.map((r) => toTracking(r.path))) },
            afterController,
        );

        this.htpasswdSecretName = this.htpasswdSecret.metadata.name;
        this.credentialsSecretName = this.credentialsSecret.metadata.name;
        this.users = pulumi.output([...users]);
        this.passwords = passwordMap;
        this.host = pulumi.output(c.host);
        this.url = pulumi.output(edgeUrl(c));
        this.tlsSecretName = pulumi.output(tlsSecretName);
        this.serviceName = pulumi.output(args.backend.serviceName);
        this.servicePort = pulumi.output(args.backend.servicePort);
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
