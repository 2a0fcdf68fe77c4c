// Small shared builders for Kubernetes objects, so every component applies the same labels and the
// same restricted security settings. Pure functions: importing this module creates nothing.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { cronIntervalSeconds } from "./fields";

export const PART_OF = "mlflow-platform";
/**
 * Pull on every pod start: a re-pushed tag can never leave a node running a stale or tampered cached
 * image (kube-score container-image-pull-policy, checkov CKV_K8S_15). The cost is one registry
 * round-trip per start; pin digests (`image@sha256:…` in stack config) to make the pull a no-op check.
 */
export const IMAGE_PULL_POLICY = "Always";

/**
 * Finished one-shot Jobs (migration, provisioning) are deleted after a week. Both are idempotent, so
 * a `pulumi up --refresh` that finds one gone and re-creates it only re-runs a no-op.
 */
export const JOB_TTL_SECONDS = 7 * 24 * 3600;

/** UID/GID used by every container: ≥10000 as kube-score and checkov require. */
export const RUN_AS = 10001;

/**
 * The recommended `app.kubernetes.io/*` labels. `component` names the ComponentResource that owns the
 * object, as its folder under components/ and its type token do; `app` names the workload (selectors
 * use it with the instance, so it never changes).
 */
export function labels(component: string, app: string, instance: string): Record<string, string> {
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    };
}

/**
 * A component's options when its type token changed: the alias lets Pulumi find the resources under
 * the old URN (and its children's, which it derives from the parent's) instead of replacing them.
 */
export function renamedFrom(opts: pulumi.ComponentResourceOptions | undefined, previousType: string): pulumi.ComponentResourceOptions {
    return pulumi.mergeOptions(opts, { aliases: [{ type: previousType }] });
}

/** The immutable subset of `labels`, for selectors. */
export function selectorLabels(app: string, instance: string): Record<string, string> {
    return { "app.kubernetes.io/name": app, "app.kubernetes.io/instance": instance };
}

/** Pod-level settings of the Pod Security `restricted` profile, plus fsGroup for volumes. */
export function podSecurityContext(): k8s.types.input.core.v1.PodSecurityContext {
    return {
        runAsNonRoot: true,
        runAsUser: RUN_AS,
        runAsGroup: RUN_AS,
        fsGroup: RUN_AS,
        fsGroupChangePolicy: "OnRootMismatch",
        seccompProfile: { type: "RuntimeDefault" },
    };
}

/** Container-level settings of the `restricted` profile with a read-only root filesystem. */
export function containerSecurityContext(): k8s.types.input.core.v1.SecurityContext {
    return {
        runAsNonRoot: true,
        runAsUser: RUN_AS,
        runAsGroup: RUN_AS,
        allowPrivilegeEscalation: false,
        privileged: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
    };
}

/** An emptyDir mount for a path the process must write to under a read-only root filesystem. */
export function scratch(name: string, mountPath: string, sizeLimit: string) {
    return {
        volume: { name, emptyDir: { sizeLimit } },
        mount: { name, mountPath },
    };
}

export interface WorkloadIdentityArgs {
    namespace: pulumi.Input<string>;
    /** The owning ComponentResource (the `app.kubernetes.io/component` label). */
    component: string;
    /** The workload (`app.kubernetes.io/name`, in selectors and object names). */
    app: string;
    instance: string;
}

/** A dedicated ServiceAccount with no API token mounted: platform pods never talk to the API server. */
export function serviceAccount(name: string, args: WorkloadIdentityArgs, opts: pulumi.CustomResourceOptions) {
    return new k8s.core.v1.ServiceAccount(
        name,
        {
            metadata: { name: `${args.instance}-${args.app}`, namespace: args.namespace, labels: labels(args.component, args.app, args.instance) },
            automountServiceAccountToken: false,
        },
        opts,
    );
}

/**
 * A PodDisruptionBudget that keeps at most one pod down at a time but never blocks a node drain:
 * with one replica, maxUnavailable 1 allows the eviction; AlwaysAllow lets unhealthy pods go.
 */
export function disruptionBudget(name: string, args: WorkloadIdentityArgs, opts: pulumi.CustomResourceOptions) {
    return new k8s.policy.v1.PodDisruptionBudget(
        name,
        {
            metadata: { name: `${args.instance}-${args.app}`, namespace: args.namespace, labels: labels(args.component, args.app, args.instance) },
            spec: {
                maxUnavailable: 1,
                unhealthyPodEvictionPolicy: "AlwaysAllow",
                selector: { matchLabels: selectorLabels(args.app, args.instance) },
            },
        },
        opts,
    );
}

/** Spread replicas over nodes: required or preferred hostname anti-affinity on the selector labels. */
export function antiAffinity(mode: "preferred" | "required", app: string, instance: string): k8s.types.input.core.v1.Affinity {
    const term = {
        topologyKey: "kubernetes.io/hostname",
        labelSelector: { matchLabels: selectorLabels(app, instance) },
    };
    return {
        podAntiAffinity:
            mode === "required"
                ? { requiredDuringSchedulingIgnoredDuringExecution: [term] }
                : { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: term }] },
    };
}

/**
 * A container `command` that turns every file in `dir` (a mounted Secret) into an environment variable
 * of the same name, then execs the container `args`. Secrets thus reach the process without appearing
 * in the pod spec's env (hardening rule 26) and without being spliced into URIs.
 */
export function secretEnvEntrypoint(dir: string): string[] {
    const script = `for f in ${dir}/*; do export "$(basename "$f")=$(cat "$f")"; done; exec "$@"`;
    return ["/bin/sh", "-c", script, "secret-env"];
}

/**
 * Capability labels: a pod that carries one may reach the matching server; the server's
 * NetworkPolicy admits exactly these pods. Keeps policies acyclic (servers need not know clients).
 */
export const CLIENT_OF = {
    database: "mlflow-platform.io/database-client",
    artifacts: "mlflow-platform.io/artifacts-client",
    tracking: "mlflow-platform.io/tracking-client",
} as const;

type NetworkPolicyIngressRule = k8s.types.input.networking.v1.NetworkPolicyIngressRule;
type NetworkPolicyEgressRule = k8s.types.input.networking.v1.NetworkPolicyEgressRule;

/** Egress to the cluster DNS (kube-dns / CoreDNS in kube-system), which every pod needs. */
export function dnsEgress(): NetworkPolicyEgressRule {
    return {
        to: [
            {
                namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
                podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
            },
        ],
        ports: [
            { protocol: "UDP", port: 53 },
            { protocol: "TCP", port: 53 },
        ],
    };
}

/** Egress to a server outside the cluster (external database, S3): NetworkPolicy cannot name hosts. */
export function externalEgress(port: pulumi.Input<number>): NetworkPolicyEgressRule {
    return { to: [{ ipBlock: { cidr: "0.0.0.0/0" } }], ports: [{ protocol: "TCP", port }] };
}

/** Where an in-cluster client (client-node's loadFromCluster, the upgrade steps) reads its ServiceAccount token, CA and namespace. */
export const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
/** The API server sits outside the pod network: the Service's 443 and the endpoints' usual 6443. */
const KUBERNETES_API_PORTS = [443, 6443];

/** Egress to the Kubernetes API server, for the pods that call it. */
export function kubeApiEgress(): NetworkPolicyEgressRule[] {
    return KUBERNETES_API_PORTS.map((port) => externalEgress(port));
}

/**
 * What automount would give, but explicit (every ServiceAccount here has automount off): a one-hour
 * audience-bound token the kubelet rotates, the cluster CA and the namespace, mounted at SA_DIR.
 */
export function kubeApiAccess() {
    return {
        volume: {
            name: "kube-api-access",
            projected: {
                defaultMode: 0o440,
                sources: [
                    { serviceAccountToken: { path: "token", expirationSeconds: 3600 } },
                    { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
                    { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
                ],
            },
        },
        mount: { name: "kube-api-access", mountPath: SA_DIR, readOnly: true },
    };
}

export interface NetworkPolicyArgs extends WorkloadIdentityArgs {
    /** Pods the policy applies to; defaults to the component's selector labels. */
    podSelector?: Record<string, string>;
    ingress: pulumi.Input<NetworkPolicyIngressRule>[];
    egress: pulumi.Input<NetworkPolicyEgressRule>[];
}

/** A NetworkPolicy governing both directions; DNS egress is always allowed. */
export function networkPolicy(name: string, args: NetworkPolicyArgs, opts: pulumi.CustomResourceOptions) {
    return new k8s.networking.v1.NetworkPolicy(
        name,
        {
            metadata: { name: `${args.instance}-${args.app}`, namespace: args.namespace, labels: labels(args.component, args.app, args.instance) },
            spec: {
                podSelector: { matchLabels: args.podSelector ?? selectorLabels(args.app, args.instance) },
                policyTypes: ["Ingress", "Egress"],
                ingress: args.ingress,
                egress: [dnsEgress(), ...args.egress],
            },
        },
        opts,
    );
}

/** Admits pods in the given namespaces (by their immutable name label). */
export function fromNamespaces(namespaces: pulumi.Input<string>[]): k8s.types.input.networking.v1.NetworkPolicyPeer[] {
    return namespaces.map((ns) => ({ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } } }));
}

/** Denies all ingress and egress for every pod of a namespace; components then allow their edges. */
export function defaultDenyPolicy(name: string, namespace: pulumi.Input<string>, opts: pulumi.CustomResourceOptions) {
    return new k8s.networking.v1.NetworkPolicy(
        name,
        {
            metadata: { name: "default-deny", namespace, labels: labels("platform", "network-policy", "default-deny") },
            spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] },
        },
        opts,
    );
}

export interface SingleReplicaStatefulSetArgs extends WorkloadIdentityArgs {
    /** The headless Service that governs the StatefulSet. */
    serviceName: pulumi.Input<string>;
    serviceAccountName: pulumi.Input<string>;
    /** The one container; it mounts the data volume, named `data`. */
    container: k8s.types.input.core.v1.Container;
    volumes: pulumi.Input<k8s.types.input.core.v1.Volume>[];
    storageSize: string;
    storageClass?: string;
    terminationGracePeriodSeconds: number;
}

/**
 * A one-pod StatefulSet with a `data` volume claim that survives uninstall and scale-down, the
 * restricted pod settings and its own ServiceAccount: the shape both stateful servers share.
 */
export function singleReplicaStatefulSet(name: string, args: SingleReplicaStatefulSetArgs, opts: pulumi.CustomResourceOptions) {
    const podLabels = labels(args.component, args.app, args.instance);
    return new k8s.apps.v1.StatefulSet(
        name,
        {
            metadata: { namespace: args.namespace, labels: podLabels, name: `${args.instance}-${args.app}` },
            spec: {
                serviceName: args.serviceName,
                replicas: 1,
                selector: { matchLabels: selectorLabels(args.app, args.instance) },
                updateStrategy: { type: "RollingUpdate" },
                // Uninstalling or scaling down must never delete the data.
                persistentVolumeClaimRetentionPolicy: { whenDeleted: "Retain", whenScaled: "Retain" },
                template: {
                    metadata: { labels: podLabels },
                    spec: {
                        restartPolicy: "Always",
                        serviceAccountName: args.serviceAccountName,
                        automountServiceAccountToken: false,
                        securityContext: podSecurityContext(),
                        terminationGracePeriodSeconds: args.terminationGracePeriodSeconds,
                        containers: [args.container],
                        volumes: args.volumes,
                    },
                },
                volumeClaimTemplates: [
                    {
                        // volumeClaimTemplates cannot change on a live StatefulSet: these labels keep the values the
                        // first release wrote (component = the workload), so an upgrade never replaces the StatefulSet.
                        metadata: { name: "data", labels: labels(args.app, args.app, args.instance) },
                        spec: {
                            accessModes: ["ReadWriteOnce"],
                            storageClassName: args.storageClass,
                            resources: { requests: { storage: args.storageSize } },
                        },
                    },
                ],
            },
        },
        opts,
    );
}

export interface ScheduledJobArgs extends WorkloadIdentityArgs {
    /** Cron schedule, UTC. */
    schedule: string;
    /** Seconds a run may take before Kubernetes stops it. */
    activeDeadlineSeconds: number;
    /** The pods' labels besides the identity's: the CLIENT_OF labels the servers' NetworkPolicies admit. */
    clientLabels: Record<string, string>;
    serviceAccountName: pulumi.Input<string>;
    initContainers?: pulumi.Input<k8s.types.input.core.v1.Container>[];
    containers: pulumi.Input<k8s.types.input.core.v1.Container>[];
    volumes: pulumi.Input<k8s.types.input.core.v1.Volume>[];
}

/** How late a scheduled run may start (the controller was down, the previous run still going): later, it is skipped. */
export const START_DEADLINE_SECONDS = 600;

/** The name of the CronJob scheduledJob makes for a workload. */
const scheduledJobName = (args: Pick<WorkloadIdentityArgs, "instance" | "app">): string => `${args.instance}-${args.app}`;

/** What the alerts need to know of a CronJob made by scheduledJob (components/monitoring/alerts.ts). */
export interface ScheduledJobWatch {
    /**
     * The CronJob's name: `cronjob` on kube-state-metrics' CronJob series, `owner_name` on its Jobs'
     * kube_job_owner. A plain string, so the alerts do not wait for the CronJob (which waits for its buckets).
     */
    readonly cronJobName: string;
    /** The longest time between two scheduled runs, seconds. */
    readonly intervalSeconds: number;
    /** From its scheduled time, the longest a run may take to start and finish: start deadline plus run deadline. */
    readonly runSeconds: number;
}

/** What the CronJob that scheduledJob makes from these args is watched by. */
export function scheduledJobWatch(args: Pick<ScheduledJobArgs, "instance" | "app" | "schedule" | "activeDeadlineSeconds">): ScheduledJobWatch {
    return { cronJobName: scheduledJobName(args), intervalSeconds: cronIntervalSeconds(args.schedule), runSeconds: START_DEADLINE_SECONDS + args.activeDeadlineSeconds };
}

/**
 * A CronJob of the platform (the backups): UTC schedule, never two runs at once (Forbid), a start
 * deadline so missed runs do not pile up, a run deadline and two retries; the history limits clean up
 * finished Jobs. Its pods run restricted, as their own ServiceAccount, with no API token.
 */
export function scheduledJob(name: string, args: ScheduledJobArgs, opts: pulumi.CustomResourceOptions) {
    const meta = labels(args.component, args.app, args.instance);
    return new k8s.batch.v1.CronJob(
        name,
        {
            metadata: { namespace: args.namespace, labels: meta, name: scheduledJobName(args) },
            spec: {
                schedule: args.schedule,
                timeZone: "Etc/UTC",
                concurrencyPolicy: "Forbid",
                startingDeadlineSeconds: START_DEADLINE_SECONDS,
                successfulJobsHistoryLimit: 3,
                failedJobsHistoryLimit: 3,
                jobTemplate: {
                    metadata: { labels: meta },
                    spec: {
                        backoffLimit: 2,
                        activeDeadlineSeconds: args.activeDeadlineSeconds,
                        template: {
                            metadata: { labels: { ...meta, ...args.clientLabels } },
                            spec: {
                                restartPolicy: "OnFailure",
                                serviceAccountName: args.serviceAccountName,
                                automountServiceAccountToken: false,
                                securityContext: podSecurityContext(),
                                initContainers: args.initContainers,
                                containers: args.containers,
                                volumes: args.volumes,
                            },
                        },
                    },
                },
            },
        },
        opts,
    );
}

const isPlainObject = (v: unknown): v is Record<string, any> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Helm-style values merge: maps merge key by key, `over` wins; lists and scalars are replaced. */
export function deepMerge(base: Readonly<Record<string, any>>, over: Readonly<Record<string, unknown>>): Record<string, any> {
    const out: Record<string, any> = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k], v) : v;
    return out;
}

/**
 * What every chart the platform installs shares: its namespace created, upgrades atomic (a failed one
 * rolls back as a unit), failed installs cleaned up, five revisions kept.
 */
export const HELM_RELEASE = { createNamespace: true, atomic: true, cleanupOnFail: true, maxHistory: 5 } as const;
