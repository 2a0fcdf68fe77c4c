// Test helpers over the shared mock runtime (scripts/lib/mockRuntime.ts, the one `npm run render` uses).
import assert from "assert/strict";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { mapSelectorMatches } from "../policy/lib/selectors";
import { registered, Registered } from "../scripts/lib/mockRuntime";
import type { Resources } from "../components/fields";
import type { ScheduledJobWatch } from "../components/kube";

/** The repository root, and the tests' recorded and stand-in data. */
export const ROOT = path.resolve(__dirname, "..");
export const FIXTURES = path.join(__dirname, "fixtures");

export { installMocks, registered, resetRegistry, setStackConfig, unsecret, isSecretValue } from "../scripts/lib/mockRuntime";

/** The value of an output (secret or not). */
export const out = <T>(o: pulumi.Output<T>): Promise<T> => new Promise((resolve) => o.apply(resolve));

/** Barrier: resolves once each resource has been registered with the mock monitor. */
export const settle = (...resources: pulumi.Resource[]) => Promise.all(resources.map((r) => out(r.urn)));

/** Registered resources of a type token, optionally with a given resource name. */
export function find(type: string, name?: string): Registered[] {
    return registered.filter((r) => r.type === type && (name === undefined || r.name === name));
}

/** The one registered resource of a type and name; fails loudly otherwise. */
export function only(type: string, name: string): Registered {
    const found = find(type, name);
    if (found.length !== 1) throw new Error(`expected one ${type} named ${name}, found ${found.length}`);
    return found[0];
}

/**
 * Asserts that an equality selector (a `matchLabels` map or a Service selector) selects pods with
 * `podLabels`. An empty or absent selector fails: it would pass a per-key loop without checking anything.
 */
export function assertSelects(matchLabels: Record<string, string> | null | undefined, podLabels: Record<string, string> | null | undefined, msg: string): void {
    assert.ok(Object.keys(matchLabels ?? {}).length > 0, `${msg}: empty selector`);
    assert.ok(mapSelectorMatches(matchLabels, podLabels), `${msg}: selector ${JSON.stringify(matchLabels)} does not match labels ${JSON.stringify(podLabels)}`);
}

export const T = {
    Deployment: "kubernetes:apps/v1:Deployment",
    StatefulSet: "kubernetes:apps/v1:StatefulSet",
    Job: "kubernetes:batch/v1:Job",
    Service: "kubernetes:core/v1:Service",
    Secret: "kubernetes:core/v1:Secret",
    ConfigMap: "kubernetes:core/v1:ConfigMap",
    ServiceAccount: "kubernetes:core/v1:ServiceAccount",
    PDB: "kubernetes:policy/v1:PodDisruptionBudget",
    HPA: "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    NetworkPolicy: "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    CronJob: "kubernetes:batch/v1:CronJob",
    RandomPassword: "random:index/randomPassword:RandomPassword",
    Role: "kubernetes:rbac.authorization.k8s.io/v1:Role",
    RoleBinding: "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
} as const;

export const smallResources: Resources = {
    requests: { cpu: "100m", memory: "128Mi", "ephemeral-storage": "64Mi" },
    limits: { cpu: "500m", memory: "256Mi", "ephemeral-storage": "256Mi" },
};

/** smallResources with room on disk for a pod's emptyDirs (PostgreSQL's 272Mi, the tracking server's /tmp and metrics). */
export const smallResourcesWithScratch: Resources = { ...smallResources, limits: { ...smallResources.limits, "ephemeral-storage": "1Gi" } };

/** Where a TrackingServer fixture's migration Job dumps the database before an upgrade. */
export const preUpgradeDump = {
    dumpImage: "postgres:17",
    uploadImage: "minio/mc:1",
    retain: 3,
    store: { endpoint: "http://minio.ml.svc:9000", bucket: "backups", credentialsSecretName: "backup-secret", clientEgress: { ports: [{ protocol: "TCP", port: 9000 }] } },
};

/** Asserts the restricted Pod Security settings every platform pod must carry. */
export function assertRestricted(podSpec: any, assert: typeof import("assert/strict")): void {
    assert.equal(podSpec.automountServiceAccountToken, false, "service account token must not be mounted");
    assert.ok(podSpec.serviceAccountName, "pod needs a dedicated service account");
    assert.equal(podSpec.securityContext.runAsNonRoot, true);
    assert.ok(podSpec.securityContext.runAsUser >= 10000, "UID must be ≥ 10000");
    assert.equal(podSpec.securityContext.seccompProfile.type, "RuntimeDefault");
    for (const c of [...(podSpec.initContainers ?? []), ...podSpec.containers]) {
        assert.equal(c.securityContext.allowPrivilegeEscalation, false, `${c.name}: privilege escalation`);
        assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"], `${c.name}: capabilities`);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${c.name}: read-only root`);
        assert.equal(c.securityContext.runAsNonRoot, true, `${c.name}: non-root`);
        for (const kind of ["requests", "limits"]) {
            for (const r of ["cpu", "memory", "ephemeral-storage"]) assert.ok(c.resources[kind][r], `${c.name}: ${kind}.${r}`);
        }
        assert.match(c.image, /:[\w.-]+$|@sha256:/, `${c.name}: image must be pinned`);
        assert.doesNotMatch(c.image, /:latest$/, `${c.name}: no latest tag`);
        for (const e of c.env ?? []) {
            const secretName = /PASSWORD|SECRET|TOKEN/i.test(e.name) && !/_FILE$/.test(e.name);
            assert.ok(!secretName || e.value === undefined, `${c.name}: env ${e.name} holds a literal secret`);
        }
    }
}

/**
 * How long a hook may take to install what it needs: a cold machine installs (MLflow's venvs, PostgreSQL,
 * MinIO's build), and an installer waits its turn when another run (`npm run local`, a second test run)
 * holds the cache's lock for its own install.
 */
export const INSTALL_TIMEOUT_MS = 30 * 60_000;

/**
 * A backup component's `watch` (what its alerts are scoped to) describes the CronJob it rendered: the
 * CronJob's name, its schedule's longest interval, and its start plus run deadline as the spec has them.
 * `make` builds the component under the name given, on the schedule given (its default when undefined);
 * each case is a schedule and the interval expected. Returns the watches, in the cases' order.
 */
export async function assertWatches(
    prefix: string,
    make: (name: string, schedule: string | undefined) => { readonly watch: ScheduledJobWatch; readonly cronJob: pulumi.Resource },
    cases: [schedule: string | undefined, intervalSeconds: number][],
): Promise<ScheduledJobWatch[]> {
    const built = cases.map(([schedule], i) => make(`${prefix}-${i}`, schedule));
    await settle(...built.map((b) => b.cronJob));
    for (const [i, { watch }] of built.entries()) {
        const cronJob = only(T.CronJob, `${prefix}-${i}-cronjob`).inputs;
        assert.equal(watch.cronJobName, cronJob.metadata.name);
        assert.equal(watch.intervalSeconds, cases[i][1], `${cases[i][0]}`);
        assert.equal(watch.runSeconds, cronJob.spec.startingDeadlineSeconds + cronJob.spec.jobTemplate.spec.activeDeadlineSeconds);
    }
    return built.map((b) => b.watch);
}
