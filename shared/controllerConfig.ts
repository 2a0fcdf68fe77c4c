// The deploy controller's configuration file, as a type: what components/deployController renders
// into its ConfigMap and what controller/config.ts validates at start. Shared so that neither side
// imports the other. Secrets are never in this file: it names the files (mounted Secrets) that hold them.
import { CONTROLLER_PORTS } from "./ports";

export const DEFAULT_CONFIG_PATH = "/etc/mlflow-deploy-controller/config.json";
export const DEFAULT_WEBHOOK_PATH = "/webhooks/mlflow";

/** A KServe InferenceService whose `spec.predictor.model.storageUri` the controller owns. */
export interface InferenceServiceTarget {
    readonly kind: "InferenceService";
    readonly namespace: string;
    readonly name: string;
    /**
     * The InferenceService to create when none exists (metadata and spec; the controller sets name,
     * namespace, storageUri and the version annotation). Without it, a minimal MLflow/v2 predictor in
     * KServe Standard mode is created.
     */
    readonly template?: Record<string, unknown>;
}

/**
 * A local serving target: the served state lives in `stateFile` (JSON `{version, artifact}`); applying
 * runs `command` (if any) with MODEL_* env and records the state when it exits 0.
 */
export interface CommandTarget {
    readonly kind: "Command";
    readonly stateFile: string;
    readonly command?: readonly string[];
    readonly timeoutMs: number;
}

export type TargetConfig = InferenceServiceTarget | CommandTarget;

export interface ModelConfig {
    /** Unique key: the `model` label of every metric and log line. Defaults to the target's name. */
    readonly key: string;
    readonly registeredModel: string;
    readonly alias: string;
    readonly target: TargetConfig;
}

export interface ControllerConfig {
    readonly mlflow: {
        /** Tracking server base URL, e.g. `http://mlflow-tracking.mlflow.svc:5000`. */
        readonly trackingUri: string;
        /** Files holding the basic-auth user and password (mounted Secret). Both or neither. */
        readonly usernameFile?: string;
        readonly passwordFile?: string;
        /** Per REST call, milliseconds. */
        readonly timeoutMs: number;
        /** `s3://<bucket>[/<prefix>]`: the tracking server's `--artifacts-destination`. */
        readonly artifactsDestination: string;
    };
    readonly pollIntervalSeconds: number;
    readonly backoff: { readonly initialMs: number; readonly maxMs: number };
    readonly http: { readonly host: string; readonly webhookPort: number; readonly metricsPort: number };
    /** Absent: no webhook receiver (polling only). */
    readonly webhook?: {
        readonly secretFile: string;
        readonly path: string;
        /** Deliveries whose X-MLflow-Timestamp is further from now than this are refused (replay protection). */
        readonly toleranceSeconds: number;
        /** Register (create or update) this receiver as an MLflow webhook at startup. */
        readonly register?: { readonly name: string; readonly url: string };
    };
    readonly kubernetes: {
        /** API server URL; absent: in-cluster service account, else $KUBECONFIG. */
        readonly server?: string;
        readonly tokenFile?: string;
        readonly caFile?: string;
        readonly insecureSkipTlsVerify: boolean;
        /** Per API call, milliseconds. */
        readonly timeoutMs: number;
    };
    readonly models: readonly ModelConfig[];
    /** How long SIGTERM waits for in-flight reconciles. */
    readonly shutdownGraceMs: number;
    readonly logLevel: "debug" | "info" | "warn" | "error";
}

export const CONFIG_DEFAULTS = {
    timeoutMs: 5000,
    pollIntervalSeconds: 30,
    backoff: { initialMs: 1000, maxMs: 60000 },
    http: { host: "0.0.0.0", webhookPort: CONTROLLER_PORTS.webhook, metricsPort: CONTROLLER_PORTS.metrics },
    toleranceSeconds: 300,
    kubernetesTimeoutMs: 10000,
    commandTimeoutMs: 600000,
    shutdownGraceMs: 10000,
    logLevel: "info" as const,
};

/** The file as components/deployController writes it: fields the controller defaults may be left out. */
export type ControllerConfigFile = Omit<ControllerConfig, "kubernetes"> & { readonly kubernetes: Partial<ControllerConfig["kubernetes"]> };
