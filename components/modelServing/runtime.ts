// The MLServer runtime the platform ships instead of KServe's bundled one: the container, its env,
// ports and probes, shared by the ServingRuntime and by image-mode predictors. Pure builders.
import { MLSERVER_PORTS } from "../../shared/ports";
import { containerSecurityContext, IMAGE_PULL_POLICY } from "../kube";
import type { Resources } from "../fields";

/** Where KServe's storage initializer puts the model (storageUri mode). */
export const MODEL_MOUNT = "/mnt/models";
/** Where `mlflow models generate-dockerfile` puts the model (image mode). */
export const IMAGE_MODEL_DIR = "/opt/ml/model";
/** KServe's name for the serving container; the ServingRuntime and custom predictors must use it. */
export const KSERVE_CONTAINER = "kserve-container";

/** What every MLServer pod of the platform gets: requests and limits, /tmp size, inference workers. */
export const MLSERVER_POD = {
    /** The ephemeral-storage limit must hold the downloaded model. */
    resources: {
        requests: { cpu: "250m", memory: "1Gi", "ephemeral-storage": "1Gi" },
        limits: { cpu: "2", memory: "2Gi", "ephemeral-storage": "4Gi" },
    } as Resources,
    /** The /tmp emptyDir: MLServer metrics, environments, temp files. */
    tmpSizeLimit: "1Gi",
    /** MLSERVER_PARALLEL_WORKERS. */
    parallelWorkers: 1,
} as const;

const HTTP_PORT = MLSERVER_PORTS.http.containerPort;
const containerPorts = Object.values(MLSERVER_PORTS);

/** Env of an MLServer container serving one MLflow model from `modelDir`. */
export function mlserverEnv(modelName: string, modelDir: string): { name: string; value: string }[] {
    return [
        { name: "MLSERVER_MODEL_IMPLEMENTATION", value: "mlserver_mlflow.MLflowRuntime" },
        { name: "MLSERVER_MODEL_NAME", value: modelName },
        { name: "MLSERVER_MODEL_URI", value: modelDir },
        { name: "MLSERVER_HTTP_PORT", value: String(HTTP_PORT) },
        { name: "MLSERVER_GRPC_PORT", value: String(MLSERVER_PORTS.grpc.containerPort) },
        { name: "MLSERVER_METRICS_PORT", value: String(MLSERVER_PORTS.metrics.containerPort) },
        { name: "MLSERVER_PARALLEL_WORKERS", value: String(MLSERVER_POD.parallelWorkers) },
        // Everything MLServer and MLflow write goes to the /tmp emptyDir, so the root stays read-only.
        { name: "MLSERVER_METRICS_DIR", value: "/tmp/mlserver/metrics" },
        { name: "MLSERVER_ENVIRONMENTS_DIR", value: "/tmp/mlserver/envs" },
        { name: "HOME", value: "/tmp" },
        { name: "NUMBA_CACHE_DIR", value: "/tmp/.cache/numba" },
        { name: "MLFLOW_DISABLE_TELEMETRY", value: "true" },
        { name: "DO_NOT_TRACK", value: "true" },
        { name: "PYTHONDONTWRITEBYTECODE", value: "1" },
        { name: "PYTHONUNBUFFERED", value: "1" },
    ];
}

const probes = {
    startupProbe: { httpGet: { path: "/v2/health/live", port: HTTP_PORT }, periodSeconds: 5, failureThreshold: 120 },
    readinessProbe: { httpGet: { path: "/v2/health/ready", port: HTTP_PORT }, periodSeconds: 10, timeoutSeconds: 5 },
    livenessProbe: { httpGet: { path: "/v2/health/live", port: HTTP_PORT }, periodSeconds: 30, timeoutSeconds: 10, failureThreshold: 5 },
};

/**
 * The MLServer container and its /tmp volume, for the ServingRuntime and for image-mode predictors:
 * `mlserver start <modelDir>` run directly, restricted, read-only root, ports, probes.
 */
export function mlserverPod(p: { image: unknown; modelDir: string; env: { name: string; value: string }[] }) {
    return {
        containers: [
            {
                name: KSERVE_CONTAINER,
                image: p.image,
                imagePullPolicy: IMAGE_PULL_POLICY,
                command: ["mlserver", "start", p.modelDir],
                workingDir: "/tmp",
                env: p.env,
                ports: containerPorts,
                ...probes,
                resources: MLSERVER_POD.resources,
                securityContext: containerSecurityContext(),
                volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            },
        ],
        volumes: [{ name: "tmp", emptyDir: { sizeLimit: MLSERVER_POD.tmpSizeLimit } }],
    };
}

/**
 * The ServingRuntime spec: MLflow formats 1–3 over the v2 protocol, MLServer started directly (the
 * image's CMD sources scripts from /opt/mlserver, which only UID 1000 / GID 0 can enter), restricted
 * security context with a read-only root and a /tmp emptyDir.
 */
export function servingRuntimeSpec(image: string) {
    return {
        annotations: { "prometheus.kserve.io/port": String(MLSERVER_PORTS.metrics.containerPort), "prometheus.kserve.io/path": "/metrics" },
        supportedModelFormats: ["1", "2", "3"].map((version) => ({ name: "mlflow", version, autoSelect: true, priority: 1 })),
        protocolVersions: ["v2"],
        // {{.Name}} is replaced by KServe with the InferenceService name.
        ...mlserverPod({ image, modelDir: MODEL_MOUNT, env: mlserverEnv("{{.Name}}", MODEL_MOUNT) }),
    };
}
