// What the edge asks of ingress-nginx: the Ingress annotations and, when the platform installs the
// controller, its pinned chart and values. Pure functions of the ingress config slice.
import { NGINX, type IngressConfig } from "./schema";

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

/** The Ingress annotations: basic auth against `authSecretName`, streaming proxy, optional TLS, rate limits. */
export function ingressAnnotations(c: IngressConfig, authSecretName: string): Record<string, string> {
    const out: Record<string, string> = {
        [`${NGINX}/auth-type`]: "basic",
        [`${NGINX}/auth-secret`]: authSecretName,
        [`${NGINX}/auth-secret-type`]: "auth-file",
        [`${NGINX}/auth-realm`]: c.realm,
        [`${NGINX}/proxy-body-size`]: c.proxyBodySize,
        [`${NGINX}/proxy-read-timeout`]: String(c.proxyReadTimeoutSeconds),
        [`${NGINX}/proxy-send-timeout`]: String(c.proxySendTimeoutSeconds),
        // Stream uploads and downloads instead of spooling multi-GB bodies on the controller's disk.
        [`${NGINX}/proxy-request-buffering`]: "off",
        [`${NGINX}/proxy-buffering`]: "off",
    };
    if (c.tls) out[`${NGINX}/force-ssl-redirect`] = "true";
    if (c.tls?.clusterIssuer !== undefined) out["cert-manager.io/cluster-issuer"] = c.tls.clusterIssuer;
    if (c.tls?.issuer !== undefined) out["cert-manager.io/issuer"] = c.tls.issuer;
    if (c.rateLimit?.rps !== undefined) out[`${NGINX}/limit-rps`] = String(c.rateLimit.rps);
    if (c.rateLimit?.burstMultiplier !== undefined) out[`${NGINX}/limit-burst-multiplier`] = String(c.rateLimit.burstMultiplier);
    if (c.rateLimit?.connections !== undefined) out[`${NGINX}/limit-connections`] = String(c.rateLimit.connections);
    return { ...c.extraAnnotations, ...out };
}

/**
 * MLflow API paths the edge answers with 403 for every client, each with the reason. Clients in the
 * cluster (the deploy controller registering its webhook) reach the Service directly and keep them.
 */
export const EDGE_REFUSED_PATHS: readonly { readonly path: string; readonly why: string }[] = [
    ...["/api/2.0/mlflow/webhooks", "/ajax-api/2.0/mlflow/webhooks"].map((path) => ({
        path,
        why:
            "a webhook makes the server call a URL of the caller's choosing from inside the cluster, and `…/test` returns the answer " +
            "(request forgery); the deploy controller's own webhook must not be edited or deleted by users",
    })),
    { path: "/ajax-api/3.0/mlflow/assistant", why: "the assistant runs tools on the server's host; MLflow means it for the server's own host only" },
];

/** Annotations of the Ingress that refuses EDGE_REFUSED_PATHS: a denylist of every address. */
export function refusedAnnotations(c: Pick<IngressConfig, "tls">): Record<string, string> {
    return { [`${NGINX}/denylist-source-range`]: "0.0.0.0/0,::/0", ...(c.tls ? { [`${NGINX}/force-ssl-redirect`]: "true" } : {}) };
}

/**
 * Values for the ingress-nginx chart: snippets off (controller flag and ConfigMap), annotation
 * validation on with `High` as the highest risk level honoured, admission webhook on and failing
 * closed, 429 for rate-limited requests, metrics on.
 */
export function controllerValues(c: Pick<IngressConfig, "className" | "controller">): Record<string, any> {
    return {
        controller: {
            replicaCount: c.controller.replicas,
            minAvailable: 1,
            allowSnippetAnnotations: false,
            enableAnnotationValidations: true,
            ingressClass: c.className,
            ingressClassResource: { name: c.className, enabled: true, default: false, controllerValue: "k8s.io/ingress-nginx" },
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
            service: { type: c.controller.serviceType },
            metrics: { enabled: true, serviceMonitor: { enabled: false } },
            resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } },
        },
        defaultBackend: { enabled: false },
    };
}
