// TLS on every Ingress: MLflow clients send basic-auth credentials and artifacts through it.
import * as k8s from "@pulumi/kubernetes";
import { ResourceValidationPolicy, validateResourceOfType } from "@pulumi/policy";
import { attempt, UNKNOWN } from "./lib/unknowns";

/** Whether a TLS host pattern (`a.example.com` or `*.example.com`) covers `host`, as Ingress matches them. */
export function tlsHostCovers(pattern: string, host: string): boolean {
    if (pattern === host) return true;
    if (!pattern.startsWith("*.")) return false;
    const suffix = pattern.slice(1); // ".example.com"
    return host.endsWith(suffix) && !host.slice(0, -suffix.length).includes(".") && host.length > suffix.length;
}

/** Policy config: hosts a stack deliberately serves without TLS (a dev cluster), listed by name. */
export interface IngressTlsConfig {
    plaintextHosts?: string[];
}

export const ingressTls: ResourceValidationPolicy = {
    name: "ingress-tls-required",
    description:
        "Every Ingress (networking.k8s.io/v1) has a non-empty spec.tls, and every rule host is covered by a spec.tls entry (listed, matched by a wildcard, or an entry without hosts). " +
        "Hosts listed in the policy config `plaintextHosts` are exempt (dev only; see policy/config/dev.json). " +
        "Upstream: PO:tlsSettingsMissing (hardening checklist row 32).",
    enforcementLevel: "mandatory",
    severity: "high",
    configSchema: { properties: { plaintextHosts: { type: "array", items: { type: "string" } } } },
    validateResource: validateResourceOfType(k8s.networking.v1.Ingress, (ingress, args, report) => {
        const exempt = new Set(args.getConfig<IngressTlsConfig>().plaintextHosts ?? []);
        const hosts = attempt(() => (ingress.spec?.rules ?? []).map((r) => r.host ?? ""));
        if (hosts !== UNKNOWN && hosts.length > 0 && hosts.every((h) => exempt.has(h))) return;
        const tls = attempt(() => ingress.spec?.tls);
        if (tls === UNKNOWN) return;
        if (!tls || tls.length === 0) {
            report("Ingress has no spec.tls: every Ingress must terminate TLS");
            return;
        }
        const rules = attempt(() => ingress.spec?.rules ?? []);
        if (rules === UNKNOWN) return;
        rules.forEach((rule) => {
            attempt(() => {
                const host = rule.host;
                if (typeof host !== "string" || host === "" || exempt.has(host)) return;
                // A tls entry without hosts applies to the controller's wildcard host, i.e. to every host.
                const covered = tls.some((t) => !t.hosts || t.hosts.length === 0 || t.hosts.some((pattern) => tlsHostCovers(pattern, host)));
                if (!covered) report(`Ingress host "${host}" is not listed in any spec.tls[].hosts, so it is served without TLS`);
            });
        });
    }),
};
