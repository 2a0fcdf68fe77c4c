// The `ingress` config slice: the authenticating edge (ingress-nginx, basic auth from generated passwords).
import { z } from "zod";
import { conflict, dnsName, missing, quantityValue, replicas } from "../fields";

export const NGINX = "nginx.ingress.kubernetes.io";

// nginx sizes: a whole number with an optional k/m/g suffix (1024-based).
const NGINX_SIZE = /^\d+[kmg]?$/;

/** Bytes of an nginx size (`512m`, `4g`; 1024-based). */
export function nginxSizeValue(size: string): number {
    const m = /^(\d+)([kmg]?)$/.exec(size);
    if (!m) throw new Error(`not an nginx size: ${size}`);
    return Number(m[1]) * ({ "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 } as Record<string, number>)[m[2]];
}

/** The largest nginx size not above a Kubernetes quantity (`4Gi` → `4g`, `1536Mi` → `1536m`). */
export function nginxSize(q: string): string {
    const bytes = Math.floor(quantityValue(q));
    for (const [unit, factor] of [["g", 2 ** 30], ["m", 2 ** 20], ["k", 2 ** 10]] as const) {
        if (bytes % factor === 0) return `${bytes / factor}${unit}`;
    }
    return String(bytes);
}

/** Login names: also keys of the credentials Secret, never `:` (the htpasswd field separator). */
export const USER_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** Annotations AuthIngress sets itself, plus ones that would let requests past basic auth. */
export const RESERVED_ANNOTATIONS = new Set([
    ...["auth-type", "auth-secret", "auth-secret-type", "auth-realm", "satisfy", "enable-global-auth"].map((k) => `${NGINX}/${k}`),
    ...["proxy-body-size", "proxy-read-timeout", "proxy-send-timeout", "proxy-request-buffering", "proxy-buffering"].map((k) => `${NGINX}/${k}`),
    ...["limit-rps", "limit-burst-multiplier", "limit-connections", "ssl-redirect", "force-ssl-redirect"].map((k) => `${NGINX}/${k}`),
    "cert-manager.io/cluster-issuer",
    "cert-manager.io/issuer",
]);

/** Why an extra annotation is refused, or undefined. */
export function annotationProblem(key: string, value: string): string | undefined {
    if (/snippet/i.test(key)) return "is a snippet annotation: snippets inject raw nginx configuration (CVE-2021-25742, CVE-2025-1974) and are never allowed";
    if (RESERVED_ANNOTATIONS.has(key)) return "is set by the platform; use its ingress.* setting instead";
    if (/[\r\n\0]/.test(value)) return "has a line break in its value, the pattern of nginx config injection";
    return undefined;
}

const seconds = z.number().int().min(60, "must be at least 60").max(86400, "must be at most 86400");

export const ingressSchema = z
    .strictObject({
        host: dnsName("a DNS name such as mlflow.example.com").default("mlflow.local").describe("the public host name; added to MLflow's --allowed-hosts"),
        className: dnsName("an IngressClass name").default("nginx").describe("IngressClass of the Ingress"),
        users: z
            .array(z.string().regex(USER_NAME, "must be 1-64 of letters, digits, '.', '_' or '-'"))
            .min(1, "must list at least one user")
            .refine((u) => new Set(u).size === u.length, "must not repeat a user")
            .default(["mlflow"])
            .describe("basic-auth users; each gets a generated 32-character password"),
        realm: z.string().regex(/^[A-Za-z0-9 .,_-]{1,64}$/, "must be letters, digits, space or .,_-").default("MLflow").describe("basic-auth realm"),
        proxyBodySize: z
            .string()
            .regex(NGINX_SIZE, "must be an nginx size such as 512m or 4g")
            .refine((v) => !NGINX_SIZE.test(v) || nginxSizeValue(v) > 0, "must be above 0 (0 is nginx's unlimited, more than the server can spool)")
            .optional()
            .describe("largest upload (nginx size, ≤ tracking.tmpSizeLimit, where the server spools it)")
            .meta({ defaultText: "`tracking.tmpSizeLimit`" }),
        proxyReadTimeoutSeconds: seconds.default(900).describe("seconds nginx waits between two reads from the server (60-86400)"),
        proxySendTimeoutSeconds: seconds.default(900).describe("seconds nginx waits between two writes to the server (60-86400)"),
        rateLimit: z
            .strictObject({
                rps: z.number().int().min(1, "must be at least 1").optional().describe("requests per second per client IP and controller replica; excess gets 429"),
                burstMultiplier: z.number().int().min(1, "must be at least 1").optional().describe("burst as a multiple of rps (the controller's default is 5)"),
                connections: z.number().int().min(1, "must be at least 1").optional().describe("concurrent connections per client IP and controller replica"),
            })
            .superRefine((r, ctx) => {
                if (r.burstMultiplier !== undefined && r.rps === undefined) missing(ctx, "rps", "ingress.rateLimit.burstMultiplier is a multiple of it");
            })
            .optional()
            .describe("rate limits; off when unset"),
        tls: z
            .strictObject({
                secretName: dnsName("a Secret name").optional().describe("an existing kubernetes.io/tls Secret for the host"),
                clusterIssuer: dnsName("a ClusterIssuer name").optional().describe("cert-manager ClusterIssuer that issues the certificate"),
                issuer: dnsName("an Issuer name").optional().describe("cert-manager Issuer (namespaced) that issues the certificate"),
            })
            .refine((t) => [t.secretName, t.clusterIssuer, t.issuer].filter(Boolean).length === 1, "must set exactly one of secretName, clusterIssuer, issuer")
            .optional()
            .describe("TLS from exactly one source; required unless the stack is `development: true` or sets ingress.allowPlaintext"),
        allowPlaintext: z
            .boolean()
            .default(false)
            .describe("serve without TLS on a stack that is not `development: true` (basic-auth passwords then cross the network in clear text)"),
        extraAnnotations: z
            .record(z.string(), z.string())
            .superRefine((extra, ctx) => {
                for (const [key, value] of Object.entries(extra)) {
                    const problem = annotationProblem(key, value);
                    if (problem) ctx.addIssue({ code: "custom", path: [key], message: problem });
                }
            })
            .default({})
            .describe("more Ingress annotations; snippets and the ones the platform sets are refused"),
        controller: z
            .strictObject({
                install: z.boolean().default(false).describe("install the pinned ingress-nginx chart (snippets off, admission webhook failing closed) into network.ingressControllerNamespace"),
                replicas: replicas.default(2).describe("controller pods"),
                serviceType: z.enum(["LoadBalancer", "NodePort", "ClusterIP"]).default("LoadBalancer").describe("type of the controller's Service"),
            })
            .prefault({})
            .describe("the ingress-nginx controller itself"),
    })
    .superRefine((i, ctx) => {
        if (i.tls !== undefined && i.allowPlaintext) {
            conflict(ctx, i, { allowPlaintext: "must not be set together with ingress.tls", tls: "must not be set together with ingress.allowPlaintext" });
        }
    })
    .describe("the authenticating edge");

type ParsedIngress = z.infer<typeof ingressSchema>;
/** The slice AuthIngress gets: the stack resolves proxyBodySize (it defaults to tracking.tmpSizeLimit). */
export type IngressConfig = Omit<ParsedIngress, "proxyBodySize"> & { readonly proxyBodySize: string };
