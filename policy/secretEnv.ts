// No credential written into a pod spec as a literal env value: whoever can read the Deployment (or its
// Pulumi state, or `kubectl describe`) would read the secret. Secrets belong in Secret objects, mounted
// as files or referenced with valueFrom.secretKeyRef.
import { ResourceValidationPolicy } from "@pulumi/policy";
import { forEachContainer, validatePodSpecs } from "./lib/workloads";

/** A name segment that marks a credential (whole segment, so TOKENIZERS_PARALLELISM or MONKEY do not count). */
const SENSITIVE_SEGMENT =
    /^(?:[A-Z0-9]*PASSWORD|[A-Z0-9]*PASSWD|PASSPHRASE|[A-Z0-9]*SECRETS?|[A-Z0-9]*TOKENS?|BEARER|CREDENTIALS?|CREDS|(?:API|ACCESS|PRIVATE|SECRET|SIGNING|ENCRYPTION|MASTER|AUTH)?KEYS?)$/;
/** A last segment that makes the variable a pointer to the credential, not the credential. */
const POINTER_SUFFIX = new Set(["FILE", "PATH", "DIR", "FILENAME"]);
/** userinfo with a password in a URL: scheme://user:password@host */
const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/\/[^/?#@\s:]*:[^/?#@\s]+@/i;

/** Segments of an env var name: split on `_ - .` and camelCase boundaries, upper-cased. */
export function nameSegments(name: string): string[] {
    return name
        .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
        .toUpperCase()
        .split(/[^A-Z0-9]+/)
        .filter((s) => s.length > 0);
}

/** Whether an env var name looks like it holds a password, secret, token or key. */
export function isSensitiveEnvName(name: string): boolean {
    const segments = nameSegments(name);
    if (segments.length === 0 || POINTER_SUFFIX.has(segments[segments.length - 1])) return false;
    return segments.some((s) => SENSITIVE_SEGMENT.test(s));
}

export const noPlaintextSecretEnv: ResourceValidationPolicy = {
    name: "workload-no-plaintext-secret-env",
    description:
        "No container, init containers included, sets an env var whose name looks like a password, secret, token or key " +
        "(PASSWORD, SECRET, TOKEN, KEY, CREDENTIALS… as a name segment; *_FILE, *_PATH and *_DIR pointers excepted) to a literal value, " +
        "nor any env var to a URL with an embedded password; use a Secret mounted as a file or valueFrom.secretKeyRef. " +
        "Upstream: KL:env-var-secret, PO:sensitiveContainerEnvVar, CIS 5.4.1 (stricter relatives: KL:read-secret-from-env-var, CKV_K8S_35).",
    enforcementLevel: "mandatory",
    severity: "critical",
    validateResource: validatePodSpecs((spec, report) => {
        forEachContainer(spec, ({ container, where }) => {
            for (const env of container.env ?? []) {
                const value = env.value;
                if (typeof value !== "string" || value === "") continue;
                if (isSensitiveEnvName(env.name)) {
                    report(`${where}: env ${env.name} holds a literal value; reference a Secret (mounted file or valueFrom.secretKeyRef) instead`);
                } else if (URL_WITH_PASSWORD.test(value)) {
                    report(`${where}: env ${env.name} holds a URL with an embedded password; reference a Secret instead`);
                }
            }
        });
    }),
};
