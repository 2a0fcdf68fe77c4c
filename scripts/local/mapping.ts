// The mapping from a rendered pod to a local process, in one place and without side effects: what a
// kubelet would hand a container (command, args, env, mounted files, working directory) becomes argv,
// env and files under .local/. Only two things change on the way: Service hostnames and ports become
// 127.0.0.1 and a local port, and container paths of mounted volumes become directories under .local/.
// What cannot be honoured locally is listed in LOCAL_LIMITS (and in the README).
import * as fs from "fs";
import * as path from "path";
import { MLFLOW_PREVIOUS_VERSION, MLFLOW_VERSION } from "../../components/images";
import { COMPONENT as ARTIFACT_BACKUP } from "../../components/artifactBackup";
import { COMPONENT as DATABASE } from "../../components/database";
import { COMPONENT as DATABASE_BACKUP } from "../../components/databaseBackup";
import { COMPONENT as DEPLOY_CONTROLLER } from "../../components/deployController";
import { secretEnvEntrypoint } from "../../components/kube";
import { COMPONENT as MODEL_SERVING, predictorService } from "../../components/modelServing/inferenceService";
import { KSERVE_CONTAINER } from "../../components/modelServing/runtime";
import { COMPONENT as OBJECT_STORE } from "../../components/objectStore";
import { COMPONENT as TRACKING_SERVER } from "../../components/trackingServer";
import { mapSelectorMatches } from "../../policy/lib/selectors";
import type { Container, KeyToPath, PodSpec, RenderedStack } from "./stack";

/** A Service of the stack, its ports, and the loopback port each one is served on locally. */
export interface LocalService {
    name: string;
    namespace: string;
    ports: { name?: string; port: number; localPort: number }[];
}

/**
 * The Layout.ports key of the loopback port that stands in for a Service port: the Service's own, or,
 * for an ExternalName to the Service KServe makes for an InferenceService's predictor (the edge's route
 * to a served model), the port its model server listens on for http.
 */
export function servicePortKey(svc: { metadata: { name: string; namespace?: string }; spec: { type?: string; externalName?: string } }, port: number): string {
    if (svc.spec.type !== "ExternalName") return `svc/${svc.metadata.name}/${port}`;
    const target = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(svc.spec.externalName ?? "");
    const isvc = target?.[1].replace(/-predictor$/, "");
    if (!target || target[2] !== svc.metadata.namespace || !isvc || predictorService(isvc).serviceName !== target[1]) {
        throw new Error(`Service ${svc.metadata.name}: ExternalName ${svc.spec.externalName} is mapped locally only to a KServe predictor Service of its namespace`);
    }
    return `isvc/${isvc}/http`;
}

/** The names a Service answers to inside the cluster, longest first. */
export function serviceHostnames(name: string, namespace: string): string[] {
    return [`${name}.${namespace}.svc.cluster.local`, `${name}.${namespace}.svc`, `${name}.${namespace}`, name];
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Replaces every Service address in `value` with loopback: `host:port` becomes `127.0.0.1:<local port>`;
 * a namespaced host without a port (PGHOST) becomes `127.0.0.1`. A bare Service name is only an address
 * when a port follows it (so `BUCKET=mlflow` is never taken for the Service `mlflow`). A port the Service
 * does not expose is an error: the manifest would not work in the cluster either.
 */
export function rewriteServiceAddresses(value: string, services: LocalService[]): string {
    let out = value;
    for (const svc of services) {
        for (const host of serviceHostnames(svc.name, svc.namespace)) {
            const portRequired = host === svc.name;
            const re = new RegExp(`(?<![\\w.-])${escapeRegExp(host)}(?::(\\d+))${portRequired ? "" : "?"}(?![\\w.-])`, "g");
            out = out.replace(re, (_m, port: string | undefined) => {
                if (port === undefined) return "127.0.0.1";
                const p = svc.ports.find((x) => x.port === Number(port));
                if (!p) throw new Error(`${host}:${port}: Service ${svc.name} has no port ${port}`);
                return `127.0.0.1:${p.localPort}`;
            });
        }
    }
    return out;
}

/** Env vars that carry a host whose port sits in a sibling variable (libpq's PGHOST/PGPORT). */
export const HOST_PORT_ENV: Record<string, string> = { PGHOST: "PGPORT" };

/** A container path mounted from a volume, and the local directory that stands in for it. */
export interface LocalMount {
    mountPath: string;
    localPath: string;
}

/**
 * Directories that exist in the container only to hold mounts (`/run/secrets/users` above
 * `/run/secrets/users/readwrite`): a script may name one and append the rest itself.
 */
export function mountParents(mounts: LocalMount[]): string[] {
    const parents = new Set<string>();
    for (const m of mounts) {
        for (let d = path.posix.dirname(m.mountPath); d !== "/" && d !== "."; d = path.posix.dirname(d)) parents.add(d);
    }
    // A parent that is itself inside a mount is that mount's business.
    return [...parents].filter((d) => !mounts.some((m) => d === m.mountPath || d.startsWith(m.mountPath + "/")));
}

/**
 * Replaces container paths under a mount with the local directory, in one pass (a replacement is never
 * rewritten again), the longest mount first, only as a whole path component (`/tmp` maps `/tmp/.mc`,
 * never `/var/tmp`). A path that is exactly a parent of mounts (mountParents) maps to the same path in
 * `mountTree`, a directory of symlinks laid out like the container's (Layout.mountTree).
 */
export function rewritePaths(value: string, mounts: LocalMount[], mountTree?: string): string {
    if (mounts.length === 0) return value;
    const sorted = [...mounts].sort((a, b) => b.mountPath.length - a.mountPath.length);
    const parents = mountTree ? mountParents(mounts) : [];
    const under = `(${sorted.map((m) => escapeRegExp(m.mountPath)).join("|")})(?=$|[/\\s"':;,=*)])`;
    const exact = parents.length ? `|(${parents.map(escapeRegExp).join("|")})(?=$|[\\s"':;,)])` : "";
    const re = new RegExp(`(?<![\\w./-])(?:${under}${exact})`, "g");
    return value.replace(re, (_m, mountPath: string | undefined, parent: string | undefined) =>
        mountPath !== undefined ? sorted.find((m) => m.mountPath === mountPath)!.localPath : path.join(mountTree!, parent!),
    );
}

/** What a volume becomes locally. */
export type LocalVolume =
    /** Secret, ConfigMap or projected volume: files written afresh at every start. */
    | { kind: "files"; files: Record<string, string | Buffer>; mode: number }
    /** emptyDir: an empty directory at every start (its sizeLimit is watched by ./eviction.ts). */
    | { kind: "emptyDir" }
    /** A PersistentVolumeClaim (from a StatefulSet's volumeClaimTemplates): a directory kept across runs. */
    | { kind: "persistent"; claim: string };

function pickKeys<T>(data: Record<string, T>, items: KeyToPath[] | undefined, what: string): Record<string, T> {
    if (!items) return { ...data };
    return Object.fromEntries(
        items.map((i) => {
            if (!(i.key in data)) throw new Error(`${what} has no key ${i.key}`);
            return [i.path, data[i.key]];
        }),
    );
}

/**
 * What the kubelet projects into a pod from the API server: its service-account token (a TokenRequest of
 * the local platform's API server), its namespace, and the cluster CA (`kube-root-ca.crt`, published into
 * every namespace by the controller-manager, never rendered).
 */
export interface PodIdentity {
    token: string;
    namespace: string;
    /** PEM of the cluster CA, for the `kube-root-ca.crt` projection. */
    ca: string;
}
const CLUSTER_CA_CONFIGMAP = "kube-root-ca.crt";

/**
 * The local form of each volume of a pod; `identity` fills service-account token and downward-API
 * projections. A claim (a StatefulSet pod's, named by its controller) is a directory kept across runs.
 */
export function localVolumes(pod: PodSpec, stack: RenderedStack, identity?: PodIdentity): Record<string, LocalVolume> {
    const out: Record<string, LocalVolume> = {};
    for (const v of pod.volumes ?? []) {
        if (v.secret) {
            const files = pickKeys(stack.secretData(v.secret.secretName), v.secret.items, `Secret ${v.secret.secretName}`);
            out[v.name] = { kind: "files", files, mode: v.secret.defaultMode ?? 0o644 };
        } else if (v.configMap) {
            const files = pickKeys(stack.configMapFiles(v.configMap.name), v.configMap.items, `ConfigMap ${v.configMap.name}`);
            out[v.name] = { kind: "files", files, mode: v.configMap.defaultMode ?? 0o644 };
        } else if (v.projected) {
            const files: Record<string, string | Buffer> = {};
            const needIdentity = (what: string): PodIdentity => {
                if (!identity) throw new Error(`volume ${v.name}: a ${what} projection needs the pod's identity (the local Kubernetes API)`);
                return identity;
            };
            for (const s of v.projected.sources) {
                if (s.secret) Object.assign(files, pickKeys(stack.secretData(s.secret.name), s.secret.items, `Secret ${s.secret.name}`));
                else if (s.configMap?.name === CLUSTER_CA_CONFIGMAP && stack.find("ConfigMap", (o) => o.metadata.name === CLUSTER_CA_CONFIGMAP).length === 0) {
                    const { ca } = needIdentity("kube-root-ca.crt");
                    for (const i of s.configMap.items ?? [{ key: "ca.crt", path: "ca.crt" }]) files[i.path] = ca;
                } else if (s.configMap) Object.assign(files, pickKeys(stack.configMapFiles(s.configMap.name), s.configMap.items, `ConfigMap ${s.configMap.name}`));
                else if (s.serviceAccountToken) files[s.serviceAccountToken.path] = needIdentity("serviceAccountToken").token;
                else if (s.downwardAPI) {
                    for (const i of s.downwardAPI.items) {
                        if (i.fieldRef?.fieldPath !== "metadata.namespace") throw new Error(`volume ${v.name}: downwardAPI ${i.fieldRef?.fieldPath ?? i.path} is not mapped locally (only metadata.namespace)`);
                        files[i.path] = needIdentity("downwardAPI").namespace;
                    }
                } else throw new Error(`volume ${v.name}: only secret, configMap, serviceAccountToken and downwardAPI projections are mapped locally`);
            }
            out[v.name] = { kind: "files", files, mode: v.projected.defaultMode ?? 0o644 };
        } else if (v.emptyDir) {
            out[v.name] = { kind: "emptyDir" };
        } else if (v.persistentVolumeClaim) {
            out[v.name] = { kind: "persistent", claim: v.persistentVolumeClaim.claimName };
        } else {
            throw new Error(`volume ${v.name}: this kind of volume is not mapped locally`);
        }
    }
    return out;
}

/** The mounts of one container, given the local directory of each volume. */
export function localMounts(container: Container, volumeDirs: Record<string, string>): LocalMount[] {
    return (container.volumeMounts ?? []).map((m) => {
        if (m.subPath) throw new Error(`container ${container.name}: subPath mounts are not mapped locally`);
        const localPath = volumeDirs[m.name];
        if (localPath === undefined) throw new Error(`container ${container.name} mounts unknown volume ${m.name}`);
        return { mountPath: m.mountPath, localPath };
    });
}

/**
 * What stands in for a container's image locally: the directories put first on PATH, and the image's
 * entrypoint when the container gives no command. Each is the same program, from Debian, PyPI or the Go
 * module proxy, at the version the image pins where a registry offers it (see install-local.sh).
 */
export interface ImageStandIn {
    /** The program the image carries. */
    program: string;
    /** Directories (of LocalTools) to put first on PATH, for the container's image. */
    path: (tools: ToolPaths, image: string) => string[];
    /** The image's ENTRYPOINT/CMD, when the container has no command. */
    entrypoint?: (tools: ToolPaths) => string[];
}

/** Paths of what install-local.sh installed (a subset of scripts/local/tools.ts LocalTools). */
export interface ToolPaths {
    bin: string;
    pgBin: string;
    mlflowVenv: string;
    /** The venv of MLFLOW_PREVIOUS_VERSION (install-local.sh part mlflow-previous). */
    mlflowPreviousVenv: string;
    mlserverVenv: string;
}

/** The MLflow version an image's tag names (`…:v3.11.1-full`), if it names one. */
export function mlflowVersionOf(image: string): string | undefined {
    return /:v?(\d+\.\d+\.\d+)(?:-[a-z]+)?$/.exec(image)?.[1];
}

/**
 * The MLflow venv for a tracking image: the one of the version its tag names (`…:v3.11.1-full`), the
 * pinned one for a tag that names none (a digest, a mirror's own tag). A version the local tier has no
 * venv of is refused: running another MLflow than the stack asks for would hide what it does.
 */
export function mlflowVenvFor(tools: ToolPaths, image: string): string {
    const version = mlflowVersionOf(image);
    if (version === undefined || version === MLFLOW_VERSION) return tools.mlflowVenv;
    if (version === MLFLOW_PREVIOUS_VERSION) {
        if (!fs.existsSync(path.join(tools.mlflowPreviousVenv, "bin", "python"))) throw new Error(`${image}: MLflow ${version}'s venv is not installed (scripts/tools/install-local.sh mlflow-previous)`);
        return tools.mlflowPreviousVenv;
    }
    throw new Error(`${image}: the local tier runs MLflow ${MLFLOW_VERSION} or ${MLFLOW_PREVIOUS_VERSION}, not ${version}`);
}

const PROGRAMS: Record<string, ImageStandIn> = {
    mlflow: { program: "mlflow", path: (t, image) => [path.join(mlflowVenvFor(t, image), "bin")] },
    // The official image's entrypoint initialises PGDATA, then runs `postgres` (see postgresInitdb in workloads.ts).
    postgres: { program: "postgres", path: (t) => [t.pgBin], entrypoint: (t) => [path.join(t.pgBin, "postgres")] },
    minio: { program: "minio", path: (t) => [t.bin], entrypoint: (t) => [path.join(t.bin, "minio")] },
    mc: { program: "mc", path: (t) => [t.bin], entrypoint: (t) => [path.join(t.bin, "mc")] },
    mlserver: { program: "mlserver", path: (t) => [path.join(t.mlserverVenv, "bin")] },
    // The deploy controller's bundle runs on the Node.js that runs the launcher, which may be older than the
    // image's (the bundle targets the image's major; today its bytes are the same as for node20).
    node: { program: "node", path: () => [path.dirname(process.execPath)] },
};

/**
 * The program each container of the platform runs, by the component that owns its pod (the
 * `app.kubernetes.io/component` label) and the container's name: what it is, not which registry its
 * image comes from, so an image mirrored under another name runs the same.
 */
export const STAND_INS: Record<string, ImageStandIn> = {
    [`${TRACKING_SERVER}/mlflow`]: PROGRAMS.mlflow,
    [`${TRACKING_SERVER}/migrate`]: PROGRAMS.mlflow,
    // The migration Job's upgrade steps: the tracking image's Python, the backup's dump (components/trackingServer/upgrade.ts).
    [`${TRACKING_SERVER}/plan`]: PROGRAMS.mlflow,
    [`${TRACKING_SERVER}/install-mc`]: PROGRAMS.mc,
    [`${TRACKING_SERVER}/dump`]: PROGRAMS.postgres,
    [`${TRACKING_SERVER}/resume`]: PROGRAMS.mlflow,
    [`${DATABASE}/postgres`]: PROGRAMS.postgres,
    [`${DATABASE_BACKUP}/install-mc`]: PROGRAMS.mc,
    [`${DATABASE_BACKUP}/dump`]: PROGRAMS.postgres,
    [`${ARTIFACT_BACKUP}/mirror`]: PROGRAMS.mc,
    [`${OBJECT_STORE}/minio`]: PROGRAMS.minio,
    [`${OBJECT_STORE}/provision`]: PROGRAMS.mc,
    [`${MODEL_SERVING}/${KSERVE_CONTAINER}`]: PROGRAMS.mlserver,
    [`${DEPLOY_CONTROLLER}/controller`]: PROGRAMS.node,
};

export function standInFor(component: string, container: string): ImageStandIn {
    const s = STAND_INS[`${component}/${container}`];
    if (!s) throw new Error(`container ${container} of component ${component}: no local stand-in (known: ${Object.keys(STAND_INS).join(", ")})`);
    return s;
}

/** The component that owns a pod or object, from its labels. */
export function componentOf(labels: Record<string, string> | undefined): string {
    const c = labels?.["app.kubernetes.io/component"];
    if (!c) throw new Error("the pod carries no app.kubernetes.io/component label");
    return c;
}

/** Downward-API fields a local process can be given: every local pod's IP is loopback. */
export const LOCAL_FIELDS: Record<string, string> = { "status.podIP": "127.0.0.1" };

/**
 * The kubelet's variable references in command, args and env values: `$(VAR)` becomes the value of
 * VAR when the container defines it (earlier in the list, for env), `$$(VAR)` is the literal `$(VAR)`,
 * and a reference to an undefined variable stays as written.
 */
export function expandVariableRefs(value: string, env: Readonly<Record<string, string>>): string {
    return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => (name === undefined ? "$" : env[name] ?? m));
}

/** Base PATH of every local process, after the image's directories. */
export const SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin";

export interface ProcessSpec {
    argv: string[];
    env: Record<string, string>;
    cwd: string;
}

export interface ContainerContext {
    stack: RenderedStack;
    /** The component that owns the pod (its `app.kubernetes.io/component` label): with the container's name, what stands in for its image. */
    component: string;
    services: LocalService[];
    mounts: LocalMount[];
    /** The container's mount layout as symlinks (Layout.mountTree), for paths that name a parent of mounts. */
    mountTree?: string;
    tools: ToolPaths;
    /** Working directory when the container sets none (the image default is `/`). */
    defaultCwd: string;
}

/** The env of a container: its `env` with Service addresses and mounted paths mapped, plus PATH. */
export function containerEnv(container: Container, ctx: ContainerContext): Record<string, string> {
    const env: Record<string, string> = {};
    for (const e of container.env ?? []) {
        let value: string;
        // The API server drops an empty `value` (omitempty): a variable with neither is the empty string, as the kubelet sets it.
        if (e.value !== undefined || !e.valueFrom) value = e.value ?? "";
        else if (e.valueFrom?.secretKeyRef) value = ctx.stack.secretData(e.valueFrom.secretKeyRef.name)[e.valueFrom.secretKeyRef.key];
        else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.namespace") value = ctx.stack.namespace;
        else if (e.valueFrom?.fieldRef && LOCAL_FIELDS[e.valueFrom.fieldRef.fieldPath] !== undefined) value = LOCAL_FIELDS[e.valueFrom.fieldRef.fieldPath];
        else throw new Error(`env ${e.name} of ${container.name}: only value, secretKeyRef and fieldRef ${["metadata.namespace", ...Object.keys(LOCAL_FIELDS)].join(", ")} are mapped locally`);
        // Like the kubelet: `$(VAR)` of a variable defined earlier in the list is expanded.
        env[e.name] = rewritePaths(rewriteServiceAddresses(expandVariableRefs(value, env), ctx.services), ctx.mounts, ctx.mountTree);
    }
    for (const [hostVar, portVar] of Object.entries(HOST_PORT_ENV)) {
        const original = container.env?.find((e) => e.name === hostVar)?.value;
        const svc = original && ctx.services.find((s) => serviceHostnames(s.name, s.namespace).includes(original));
        if (!svc) continue;
        const port = Number(env[portVar]);
        const p = svc.ports.find((x) => x.port === port);
        if (!p) throw new Error(`${portVar}=${env[portVar]}: Service ${svc.name} has no such port`);
        env[portVar] = String(p.localPort);
    }
    env.PATH = [...standInFor(ctx.component, container.name).path(ctx.tools, container.image ?? ""), SYSTEM_PATH].join(":");
    return env;
}

/**
 * argv of a container: command (or the image's entrypoint) then args, with mounted paths mapped in what
 * the manifest says. The stand-in's entrypoint is already a local path and is left as it is (it may lie
 * under a directory the container mounts over, such as /tmp).
 */
export function containerArgv(container: Container, ctx: ContainerContext, env: Record<string, string> = containerEnv(container, ctx)): string[] {
    const mapped = (values: string[]) => values.map((a) => rewritePaths(expandVariableRefs(a, env), ctx.mounts, ctx.mountTree));
    const entrypoint = container.command ? mapped(container.command) : standInFor(ctx.component, container.name).entrypoint?.(ctx.tools);
    if (!entrypoint) throw new Error(`container ${container.name} (${container.image}) has no command and its image no local entrypoint`);
    return [...entrypoint, ...mapped(container.args ?? [])];
}

export function containerProcess(container: Container, ctx: ContainerContext): ProcessSpec {
    const env = containerEnv(container, ctx);
    const argv = containerArgv(container, ctx, env);
    checkSecretEnvEntrypoint(container, argv, ctx.mounts);
    return {
        argv,
        env,
        cwd: container.workingDir ? rewritePaths(container.workingDir, ctx.mounts, ctx.mountTree) : ctx.defaultCwd,
    };
}

/**
 * A container started through components/kube.ts secretEnvEntrypoint must still be exactly that
 * entrypoint once its secret directory is mapped: the same /bin/sh script, pointed at the local files.
 * The script globs the directory unquoted, so the local path must be free of spaces and glob characters.
 */
export function checkSecretEnvEntrypoint(container: Container, argv: string[], mounts: LocalMount[]): void {
    const cmd = container.command ?? [];
    if (cmd[0] !== "/bin/sh" || cmd[3] !== "secret-env") return;
    const mount = mounts.find((m) => JSON.stringify(secretEnvEntrypoint(m.mountPath)) === JSON.stringify(cmd));
    if (!mount) throw new Error(`container ${container.name}: its secret-env command is not secretEnvEntrypoint() of a mounted directory`);
    if (!/^[\w./-]+$/.test(mount.localPath)) throw new Error(`secret-env directory ${mount.localPath} must not contain spaces or special characters`);
    if (JSON.stringify(argv.slice(0, 4)) !== JSON.stringify(secretEnvEntrypoint(mount.localPath))) {
        throw new Error(`container ${container.name}: the mapped secret-env command differs from secretEnvEntrypoint(${mount.localPath})`);
    }
}

/** Replaces the value following `flag` in argv; the flag must be there (or the manifest changed shape). */
export function replaceFlagValue(argv: string[], flag: string, value: string): string[] {
    const i = argv.indexOf(flag);
    if (i < 0 || i === argv.length - 1) throw new Error(`expected ${flag} <value> in ${argv.join(" ")}`);
    return [...argv.slice(0, i + 1), value, ...argv.slice(i + 2)];
}

/** A process listens on the loopback port that stands in for its Service port (or its container port). */
export interface ListenPorts {
    /** containerPort → local port. */
    [containerPort: number]: number;
}

/** The Service port (and so the local port) that targets a container port of the pods with `podLabels`. */
export function localPortsFor(podLabels: Record<string, string>, container: Container, stack: RenderedStack, services: LocalService[]): ListenPorts {
    const out: ListenPorts = {};
    for (const svcObj of stack.find("Service")) {
        const spec = (svcObj as any).spec;
        if (!mapSelectorMatches(spec.selector, podLabels)) continue;
        const local = services.find((s) => s.name === svcObj.metadata.name);
        for (const p of spec.ports as { name?: string; port: number; targetPort?: string | number }[]) {
            const target = p.targetPort ?? p.port;
            const cp = container.ports?.find((c) => (typeof target === "number" ? c.containerPort === target : c.name === target));
            const lp = local?.ports.find((x) => x.port === p.port);
            if (cp && lp) out[cp.containerPort] = lp.localPort;
        }
    }
    return out;
}

/**
 * What the local tier does not do, per Kubernetes feature. The README repeats this list; the unit
 * tests check that every field of the rendered pods is either mapped above or named here.
 */
export const LOCAL_LIMITS: Record<string, string> = {
    resources:
        "memory and CPU limits are enforced by cgroups when the launcher is root (each container in its own: OOM kill reported as OOMKilled, CPU throttled; not the ingress and Prometheus, which no container of the stack describes); requests are counted by the real scheduler against the node's capacity but reserve nothing; emptyDir sizeLimits and the pod's ephemeral-storage limit are watched every 10 s (over them: evicted, emptyDirs emptied, started again in place rather than as a new pod), and logs do not count",
    securityContext:
        "runAsUser/runAsGroup/fsGroup, seccomp, dropped capabilities and read-only root are not applied (PodSecurity admission does check them): processes run as the invoking user, PostgreSQL as the Debian `postgres` user and nginx as `nobody` when that is root",
    networkPolicies: "NetworkPolicies are stored by the API server but not enforced: every process binds 127.0.0.1 and anything local can reach it",
    serviceAccounts:
        "every pod that projects a token gets a real one of its ServiceAccount (TokenRequest, renewed every 20 minutes); only the deploy controller talks to the API server, over TLS checked against the projected cluster CA",
    scheduling:
        "one node: the real scheduler places every pod on it (prod's anti-affinity is shown on registered nodes in the cluster tier, tests/cluster/scheduling.spec.ts); Services are a loopback port each, forwarded to their ready endpoints (the EndpointSlices) by the local Service proxy",
    images: "images are replaced by the same programs from Debian, PyPI and the Go module proxy (PostgreSQL 15 from Debian instead of the image's 17; MinIO and mc at the versions the Go proxy serves; the Node.js running the launcher instead of the controller image's)",
    tls: "TLS, cert-manager annotations and ssl redirects are ignored; the ingress is plain HTTP on loopback",
    kserve: "KServe itself is not run: the launcher follows the InferenceServices in the platform's Kubernetes API server (as Pulumi declares them and the deploy controller creates and patches them), runs the storage initializer, starts MLServer as the ServingRuntime says and writes the InferenceService's status back (Ready conditions, URL)",
};
