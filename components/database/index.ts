import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import {
    CLIENT_OF,
    containerSecurityContext,
    disruptionBudget,
    externalEgress,
    IMAGE_PULL_POLICY,
    labels,
    networkPolicy,
    renamedFrom,
    scratch,
    selectorLabels,
    serviceAccount,
    singleReplicaStatefulSet,
} from "../kube";
import { type DatabaseConfig, POSTGRES_SCRATCH } from "./schema";

/** The owning component (folder, type token, `app.kubernetes.io/component`) and the workload it runs. */
export const COMPONENT = "database";
const APP = "postgres";
const PORT = 5432;
const SECRET_DIR = "/run/secrets/postgres";
const DATA_MOUNT = "/var/lib/postgresql/data";

/** Where a client finds the database; the password is in `passwordSecretName` (key `password`). */
export interface DatabaseConnection {
    readonly host: pulumi.Input<string>;
    readonly port: pulumi.Input<number>;
    readonly databaseName: pulumi.Input<string>;
    readonly user: pulumi.Input<string>;
    readonly sslMode: pulumi.Input<string>;
    readonly passwordSecretName: pulumi.Input<string>;
    /** Egress rule that reaches the database (from Database.clientEgress). */
    readonly clientEgress: pulumi.Input<k8s.types.input.networking.v1.NetworkPolicyEgressRule>;
}

/**
 * libpq's environment for a client container: with these, a credential-less `postgresql://` URI or a
 * bare `pg_dump` reaches the database; the password comes separately, as the file PGPASSWORD.
 */
export function libpqEnv(db: DatabaseConnection): pulumi.Output<k8s.types.input.core.v1.EnvVar[]> {
    return pulumi.all([db.host, db.port, db.databaseName, db.user, db.sslMode]).apply(([host, port, name, user, sslMode]) => [
        { name: "PGHOST", value: host },
        { name: "PGPORT", value: String(port) },
        { name: "PGDATABASE", value: name },
        { name: "PGUSER", value: user },
        { name: "PGSSLMODE", value: sslMode },
    ]);
}

export interface DatabaseArgs {
    /** Namespace of the in-cluster server and of the credentials Secret. */
    readonly namespace: pulumi.Input<string>;
    readonly config: DatabaseConfig;
    /** External mode: the password (a Pulumi secret). In-cluster: generated. */
    readonly password?: pulumi.Input<string>;
    /** `pulumi destroy` leaves the StatefulSet (so its PVC) and the credentials Secret in the cluster (retainOnDelete). */
    readonly retainOnDestroy: boolean;
}

/**
 * MLflow's metadata store: an in-cluster PostgreSQL StatefulSet (official image, data on a retained
 * PVC, durability settings pinned on) or an external server. Either way the password lives only in
 * the Secret `passwordSecretName` under the key `password`.
 */
export class Database extends pulumi.ComponentResource {
    public readonly host: pulumi.Output<string>;
    public readonly port: pulumi.Output<number>;
    public readonly databaseName: pulumi.Output<string>;
    public readonly user: pulumi.Output<string>;
    public readonly sslMode: pulumi.Output<string>;
    public readonly passwordSecretName: pulumi.Output<string>;
    /** The password, as a Pulumi secret. */
    public readonly password: pulumi.Output<string>;
    /** Egress rule a client's NetworkPolicy needs to reach the database. */
    public readonly clientEgress: pulumi.Output<k8s.types.input.networking.v1.NetworkPolicyEgressRule>;
    public readonly statefulSet?: k8s.apps.v1.StatefulSet;
    public readonly service?: k8s.core.v1.Service;

    constructor(name: string, args: DatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super(`mlflow-platform:${COMPONENT}:Database`, name, {}, renamedFrom(opts, "mlflow-platform:db:Database"));
        const c = args.config;
        const child = { parent: this };
        // What holds or unlocks the data outlives a `pulumi destroy` unless the stack opts out.
        const kept = { parent: this, retainOnDelete: args.retainOnDestroy };
        const meta = { namespace: args.namespace, labels: labels(COMPONENT, APP, name) };

        this.password =
            c.mode === "external"
                ? pulumi.secret(args.password!)
                : new random.RandomPassword(`${name}-password`, {
                      length: 32,
                      // Characters that break naive URIs (@ : / % #) on purpose: the password never enters one.
                      special: true,
                      overrideSpecial: "!#%&*()-_=+[]{}<>:?@/",
                  }, child).result;

        const secret = new k8s.core.v1.Secret(
            `${name}-credentials`,
            {
                metadata: { ...meta, name: `${name}-database` },
                type: "Opaque",
                stringData: { password: this.password, username: c.user },
            },
            kept,
        );
        this.passwordSecretName = secret.metadata.name;
        this.port = pulumi.output(c.port);
        this.databaseName = pulumi.output(c.name);
        this.user = pulumi.output(c.user);
        this.sslMode = pulumi.output(c.sslMode);

        if (c.mode === "external") {
            this.host = pulumi.output(c.host!);
            this.clientEgress = pulumi.output(externalEgress(c.port));
        } else {
            const sa = serviceAccount(`${name}-sa`, { namespace: args.namespace, component: COMPONENT, app: APP, instance: name }, child);
            this.service = new k8s.core.v1.Service(
                `${name}-svc`,
                {
                    metadata: { ...meta, name: `${name}-postgres` },
                    spec: {
                        clusterIP: "None",
                        selector: selectorLabels(APP, name),
                        ports: [{ name: "postgres", port: PORT, targetPort: "postgres" }],
                    },
                },
                child,
            );
            this.statefulSet = this.postgresStatefulSet(name, args, secret, sa, this.service);
            disruptionBudget(`${name}-pdb`, { namespace: args.namespace, component: COMPONENT, app: APP, instance: name }, child);
            // Only pods labelled as database clients (tracking server, migration, backup) get in.
            networkPolicy(
                `${name}-netpol`,
                {
                    namespace: args.namespace,
                    component: COMPONENT, app: APP,
                    instance: name,
                    ingress: [{ from: [{ podSelector: { matchLabels: { [CLIENT_OF.database]: "true" } } }], ports: [{ protocol: "TCP", port: PORT }] }],
                    egress: [],
                },
                child,
            );
            this.clientEgress = pulumi.output({ to: [{ podSelector: { matchLabels: selectorLabels(APP, name) } }], ports: [{ protocol: "TCP", port: PORT }] });
            // Derived from the StatefulSet so that users of the host wait until PostgreSQL is ready.
            this.host = pulumi.interpolate`${this.statefulSet.spec.serviceName}.${this.statefulSet.metadata.namespace}.svc`;
        }

        this.registerOutputs({
            host: this.host,
            port: this.port,
            databaseName: this.databaseName,
            user: this.user,
            sslMode: this.sslMode,
            passwordSecretName: this.passwordSecretName,
            password: this.password,
            clientEgress: this.clientEgress,
        });
    }

    private postgresStatefulSet(
        name: string,
        args: DatabaseArgs,
        secret: k8s.core.v1.Secret,
        sa: k8s.core.v1.ServiceAccount,
        service: k8s.core.v1.Service,
    ): k8s.apps.v1.StatefulSet {
        const c = args.config;
        const run = scratch("run", "/var/run/postgresql", POSTGRES_SCRATCH.run);
        const tmp = scratch("tmp", "/tmp", POSTGRES_SCRATCH.tmp);
        // Probes run as the container user over TCP loopback; pg_isready needs no password.
        const isReady = ["pg_isready", "--host=127.0.0.1", `--port=${PORT}`, `--username=${c.user}`, `--dbname=${c.name}`];
        return singleReplicaStatefulSet(
            `${name}-statefulset`,
            {
                namespace: args.namespace,
                component: COMPONENT, app: APP,
                instance: name,
                serviceName: service.metadata.name,
                serviceAccountName: sa.metadata.name,
                // Time for a fast shutdown with a checkpoint instead of crash recovery on start.
                terminationGracePeriodSeconds: 90,
                storageSize: c.storageSize,
                storageClass: c.storageClass,
                container: {
                    name: "postgres",
                    image: c.image,
                    imagePullPolicy: IMAGE_PULL_POLICY,
                    args: [
                        "-c", "fsync=on",
                        "-c", "synchronous_commit=on",
                        "-c", "full_page_writes=on",
                        "-c", `max_connections=${c.maxConnections}`,
                        "-c", "listen_addresses=*",
                    ],
                    env: [
                        { name: "POSTGRES_USER", value: c.user },
                        { name: "POSTGRES_DB", value: c.name },
                        { name: "POSTGRES_PASSWORD_FILE", value: `${SECRET_DIR}/password` },
                        // A subdirectory, so the volume's lost+found does not upset initdb.
                        { name: "PGDATA", value: `${DATA_MOUNT}/pgdata` },
                    ],
                    ports: [{ name: "postgres", containerPort: PORT, protocol: "TCP" }],
                    startupProbe: { exec: { command: isReady }, periodSeconds: 5, failureThreshold: 120 },
                    readinessProbe: { exec: { command: isReady }, periodSeconds: 10, timeoutSeconds: 5 },
                    livenessProbe: { tcpSocket: { port: "postgres" }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 6 },
                    lifecycle: {
                        preStop: { exec: { command: ["/bin/sh", "-c", 'pg_ctl stop --pgdata="$PGDATA" --mode=fast --wait'] } },
                    },
                    resources: c.resources,
                    securityContext: containerSecurityContext(),
                    volumeMounts: [
                        { name: "data", mountPath: DATA_MOUNT },
                        { name: "credentials", mountPath: SECRET_DIR, readOnly: true },
                        run.mount,
                        tmp.mount,
                    ],
                },
                volumes: [{ name: "credentials", secret: { secretName: secret.metadata.name, defaultMode: 0o440 } }, run.volume, tmp.volume],
            },
            { parent: this, retainOnDelete: args.retainOnDestroy },
        );
    }
}
