// What the deploy controller is told: its config.json (typed as the file controller/config.ts reads)
// and the Role that lets it touch exactly the followed InferenceServices. Pure builders.
import type * as k8s from "@pulumi/kubernetes";
import { CONFIG_DEFAULTS, ControllerConfigFile, DEFAULT_WEBHOOK_PATH } from "../../shared/controllerConfig";

/** Where the controller's Secrets (the webhook HMAC key) are mounted. */
export const SECRETS_DIR = "/run/secrets/mlflow-deploy-controller";

/** One model whose alias the controller follows into its InferenceService of the same name. */
export interface FollowedModel {
    readonly name: string;
    readonly registeredModel: string;
    readonly alias: string;
    /** The InferenceService to create if it does not exist (ModelServing.controllerTemplate). */
    readonly template: Record<string, unknown>;
}

/** The controller's config.json. */
export function controllerConfig(p: {
    trackingUri: string;
    artifactsDestination: string;
    namespace: string;
    models: readonly FollowedModel[];
    pollIntervalSeconds: number;
    /** Receive webhooks and register this URL with MLflow at start; undefined polls only. */
    webhook?: { url: string; name: string };
}): ControllerConfigFile {
    return {
        mlflow: {
            trackingUri: p.trackingUri,
            artifactsDestination: p.artifactsDestination,
            timeoutMs: CONFIG_DEFAULTS.timeoutMs,
        },
        pollIntervalSeconds: p.pollIntervalSeconds,
        backoff: CONFIG_DEFAULTS.backoff,
        http: CONFIG_DEFAULTS.http,
        ...(p.webhook
            ? {
                  webhook: {
                      secretFile: `${SECRETS_DIR}/webhook/secret`,
                      path: DEFAULT_WEBHOOK_PATH,
                      toleranceSeconds: CONFIG_DEFAULTS.toleranceSeconds,
                      register: { name: p.webhook.name, url: p.webhook.url },
                  },
              }
            : {}),
        kubernetes: { timeoutMs: CONFIG_DEFAULTS.kubernetesTimeoutMs },
        models: p.models.map((m) => ({
            key: m.name,
            registeredModel: m.registeredModel,
            alias: m.alias,
            target: { kind: "InferenceService", namespace: p.namespace, name: m.name, template: m.template },
        })),
        shutdownGraceMs: CONFIG_DEFAULTS.shutdownGraceMs,
        logLevel: CONFIG_DEFAULTS.logLevel,
    };
}

/**
 * The Role's rules: get/list/watch/patch on exactly the followed InferenceServices (resourceNames), and
 * create on InferenceServices (creation cannot be limited by name).
 */
export function controllerRules(models: readonly Pick<FollowedModel, "name">[]): k8s.types.input.rbac.v1.PolicyRule[] {
    return [
        { apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], resourceNames: models.map((m) => m.name), verbs: ["get", "list", "watch", "patch"] },
        { apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], verbs: ["create"] },
    ];
}
