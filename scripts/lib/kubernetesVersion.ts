// The one Kubernetes version of the project, pinned in scripts/tools/kubernetes.env: the control plane
// the cluster tier and `npm run local` run (built by install-kubernetes.sh) and the schemas the checkers
// validate against are the same minor.
import * as fs from "fs";
import * as path from "path";

export const KUBERNETES_ENV = path.resolve(__dirname, "..", "tools", "kubernetes.env");

/** KEY=VALUE lines of kubernetes.env (comments and blank lines skipped). */
export function readKubernetesEnv(file = KUBERNETES_ENV): { kubernetes: string; etcd: string } {
    const env: Record<string, string> = {};
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
        const m = /^([A-Z_]+)=(\S+)\s*$/.exec(line.trim());
        if (m) env[m[1]] = m[2];
    }
    for (const k of ["KUBERNETES_VERSION", "ETCD_VERSION"]) {
        if (!/^v\d+\.\d+\.\d+$/.test(env[k] ?? "")) throw new Error(`${file}: ${k} must be a release like v1.34.4, got ${JSON.stringify(env[k])}`);
    }
    return { kubernetes: env.KUBERNETES_VERSION, etcd: env.ETCD_VERSION };
}

export const KUBERNETES_VERSION = readKubernetesEnv().kubernetes;

/**
 * The schema set for a Kubernetes release: its minor, `1.34.4` → `1.34.0`. The checkers' schema wheel
 * (kubernetes-validate) ships one schema set per minor, and it has this exact minor; the API of a minor
 * does not change between patches.
 */
export function schemaVersionOf(release: string): string {
    const m = /^v?(\d+)\.(\d+)\.\d+$/.exec(release);
    if (!m) throw new Error(`not a Kubernetes release: ${release}`);
    return `${m[1]}.${m[2]}.0`;
}
