// The tracking server's schema upgrade without a writer on the old schema (upgrade/mlflow_platform_upgrade.py
// explains the steps): what the migration Job runs before `mlflow db upgrade`, the Job that scales the
// server back after the new version rolled, and the least permission both need.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { containerSecurityContext, IMAGE_PULL_POLICY, kubeApiAccess, labels, SA_DIR, scratch, WorkloadIdentityArgs } from "../kube";

/** The workload name of the upgrade steps (their ServiceAccount, Role, labels). */
export const UPGRADE_APP = "upgrade";
/** Where the steps' script is mounted in the tracking image. */
export const UPGRADE_DIR = "/opt/mlflow-platform/upgrade";
const SCRIPT = "mlflow_platform_upgrade.py";
/** The plan the first step leaves for the next ones (`fresh`, `current`, `upgrade <from> <to>`). */
const PLAN_DIR = "/run/mlflow-upgrade";
export const PLAN_FILE = `${PLAN_DIR}/plan`;
/** Where in the backup bucket the dump before an upgrade goes: restoring it is the rollback. */
export const PRE_UPGRADE_PREFIX = "pre-upgrade/";
/** The dump container's test (PLAN_FILE in its env): only an upgrade of a schema that holds data is dumped first. */
export const UPGRADE_PLANNED = `grep -q '^upgrade ' "$PLAN_FILE"`;
/** What the dump step says when the plan needs no dump. */
export const NO_DUMP_NEEDED = "no upgrade of a schema holding data: no dump needed";

/** The script as ConfigMap data, and its hash (in the ConfigMap's name: a change rolls what mounts it). */
export function upgradeScript(): { data: Record<string, string>; sha256: string } {
    const data = { [SCRIPT]: fs.readFileSync(path.join(__dirname, "upgrade", SCRIPT), "utf8") };
    return { data, sha256: createHash("sha256").update(data[SCRIPT]).digest("hex") };
}

/**
 * The steps' Role: read and scale the one tracking Deployment, list pods to see its pods gone. Nothing
 * else: no Secrets, no other workload.
 */
export function upgradeRules(deploymentName: string): k8s.types.input.rbac.v1.PolicyRule[] {
    return [
        { apiGroups: ["apps"], resources: ["deployments", "deployments/scale"], resourceNames: [deploymentName], verbs: ["get", "patch"] },
        { apiGroups: [""], resources: ["pods"], verbs: ["list"] },
    ];
}

/** A ServiceAccount's Role and RoleBinding, both named after the workload. */
export function upgradeAccess(identity: WorkloadIdentityArgs, serviceAccountName: pulumi.Input<string>, deploymentName: string, opts: pulumi.CustomResourceOptions) {
    const metadata = { name: `${identity.instance}-${identity.app}`, namespace: identity.namespace, labels: labels(identity.component, identity.app, identity.instance) };
    const role = new k8s.rbac.v1.Role(`${identity.instance}-${identity.app}-role`, { metadata, rules: upgradeRules(deploymentName) }, opts);
    return new k8s.rbac.v1.RoleBinding(
        `${identity.instance}-${identity.app}-rolebinding`,
        {
            metadata,
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
            subjects: [{ kind: "ServiceAccount", name: serviceAccountName, namespace: identity.namespace }],
        },
        opts,
    );
}

export interface UpgradeStepArgs {
    /** The tracking image: the steps read its MLflow's migrations. */
    readonly image: string;
    readonly deploymentName: string;
    /** The ConfigMap holding upgradeScript(). */
    readonly scriptConfigMap: pulumi.Input<string>;
}

const RESOURCES = {
    requests: { cpu: "100m", memory: "256Mi", "ephemeral-storage": "16Mi" },
    limits: { cpu: "1", memory: "1Gi", "ephemeral-storage": "64Mi" },
};

/**
 * A container of the tracking image running one command of the script; `entrypoint` (the secret-env
 * one, for the database password) runs it as its args when given.
 */
function stepContainer(command: "plan" | "migrate" | "resume", args: UpgradeStepArgs, extra: { env?: pulumi.Input<any[]>; volumeMounts?: any[]; entrypoint?: string[] } = {}) {
    const argv = ["python", `${UPGRADE_DIR}/${SCRIPT}`, command];
    const env = [
        { name: "NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        { name: "DEPLOYMENT", value: args.deploymentName },
        // Where the projected token is mounted (the script's default too): named, so a path can be mapped.
        { name: "SA_DIR", value: SA_DIR },
        { name: "HOME", value: "/tmp" },
        { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
    ];
    return {
        name: command,
        image: args.image,
        imagePullPolicy: IMAGE_PULL_POLICY,
        ...(extra.entrypoint ? { command: extra.entrypoint, args: argv } : { command: argv }),
        env: pulumi.output(extra.env ?? []).apply((more) => [...env, ...more]),
        resources: RESOURCES,
        securityContext: containerSecurityContext(),
        volumeMounts: [kubeApiAccess().mount, { name: "upgrade-script", mountPath: UPGRADE_DIR, readOnly: true }, ...(extra.volumeMounts ?? [])],
    };
}

/** Volumes every step's pod has: the API token and the script. */
function stepVolumes(args: UpgradeStepArgs) {
    return [kubeApiAccess().volume, { name: "upgrade-script", configMap: { name: args.scriptConfigMap, defaultMode: 0o444 } }];
}

/** How the migration Job's steps reach PostgreSQL: the secret-env entrypoint, libpq's env, the mounts. */
export interface DatabaseAccess {
    readonly entrypoint: string[];
    readonly env: pulumi.Input<any[]>;
    readonly volumeMounts: any[];
}

/**
 * The migration Job's steps of the tracking image: the first (`plan`: stop the writers when the schema
 * holding data is behind) and the last (`migrate`), with the volumes they add: the plan directory, which
 * the dump step between them reads.
 */
export function migrationSteps(args: UpgradeStepArgs, database: DatabaseAccess) {
    const plan = scratch("upgrade-plan", PLAN_DIR, "1Mi");
    const withDatabase = (more: any[]) => ({ entrypoint: database.entrypoint, env: pulumi.output(database.env).apply((pg) => [...more, ...pg]), volumeMounts: database.volumeMounts });
    const planContainer = stepContainer("plan", args, { ...withDatabase([{ name: "PLAN_FILE", value: PLAN_FILE }]), volumeMounts: [plan.mount, ...database.volumeMounts] });
    const migrateContainer = stepContainer("migrate", args, withDatabase([]));
    return {
        plan: planContainer,
        migrate: migrateContainer,
        reader: { mounts: [{ ...plan.mount, readOnly: true }], env: [{ name: "PLAN_FILE", value: PLAN_FILE }] },
        volumes: [...stepVolumes(args), plan.volume],
    };
}

/** The pod spec of the Job that runs `resume` once the Deployment has rolled. */
export function resumePodSpec(args: UpgradeStepArgs, serviceAccountName: pulumi.Input<string>, podSecurityContext: k8s.types.input.core.v1.PodSecurityContext) {
    const tmp = scratch("tmp", "/tmp", "16Mi");
    return {
        restartPolicy: "OnFailure",
        serviceAccountName,
        automountServiceAccountToken: false,
        securityContext: podSecurityContext,
        containers: [stepContainer("resume", args, { volumeMounts: [tmp.mount] })],
        volumes: [...stepVolumes(args), tmp.volume],
    };
}
