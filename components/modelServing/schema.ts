// The `serving` config slice: KServe model serving fed from the registry (Standard mode, the
// project's own MLServer runtime), one InferenceService per listed model.
import { z } from "zod";
import { DEFAULT_ALIAS, isMlflowAlias } from "../../shared/mlflow";
import { conflict, image, replicas } from "../fields";
import { MLSERVER_IMAGE } from "../images";

/** An InferenceService name that stays a valid Service name as `<name>-predictor-canary`. */
const MODEL_NAME = /^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$/;
const S3_URI = /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+/;
const s3Uri = z.string().regex(S3_URI, "must be an s3://bucket/path URI naming the model directory");

export const servedModelSchema = z
    .strictObject({
        name: z.string().regex(MODEL_NAME, "must be a DNS label starting with a letter, at most 45 characters").describe("InferenceService name and v2 model name (`/v2/models/<name>/infer`)"),
        registeredModel: z.string().min(1, "must name a registered model").describe("registered model in the MLflow registry"),
        alias: z
            .string()
            .refine(isMlflowAlias, "must be an MLflow alias (letters, digits, '_' and '-'; `latest` and `v<N>` are reserved by MLflow)")
            .default(DEFAULT_ALIAS)
            .describe("registry alias to serve"),
        storageUri: s3Uri.optional().describe("s3:// model directory served when the alias cannot be resolved at `pulumi up`"),
        replicas: z
            .strictObject({ min: replicas.describe("fewest predictor pods (no scale-to-zero in Standard mode)"), max: replicas.describe("most predictor pods; above min adds KServe's CPU autoscaler") })
            .superRefine((r, ctx) => {
                if (r.max < r.min) conflict(ctx, r, { max: `must be at least min (${r.min})`, min: `must not exceed max (${r.max})` });
            })
            .default({ min: 1, max: 1 })
            .describe("predictor replicas"),
        canary: z
            .strictObject({
                storageUri: s3Uri.describe("s3:// model directory of the candidate"),
                trafficPercent: z.number().int().min(1, "must be 1-99").max(99, "must be 1-99").describe("share of requests; KServe splits by replica count"),
            })
            .optional()
            .describe("a canary predictor taking a share of the traffic"),
    })
    .describe("one model to serve");

export const servingSchema = z
    .strictObject({
        enabled: z.boolean().default(false).describe("MLServer ServingRuntime, S3 Secret and ServiceAccount, predictor NetworkPolicy, one InferenceService per model (needs KServe)"),
        installKServe: z.boolean().default(false).describe("install KServe v0.20.0 (Standard mode) from its pinned OCI charts; needs cert-manager"),
        runtimeScope: z.enum(["namespaced", "cluster"]).default("namespaced").describe("a ServingRuntime in the namespace, or a ClusterServingRuntime"),
        runtimeImage: image.default(MLSERVER_IMAGE).describe("MLServer runtime image: the platform's own by default (images/mlserver: the package set the local tier serves with)"),
        models: z
            .array(servedModelSchema)
            .refine((ms) => new Set(ms.map((m) => m.name)).size === ms.length, "must not repeat a model name")
            .default([])
            .describe("the models to serve"),
        resolveAliases: z.boolean().default(true).describe("at `pulumi up`, resolve each alias through the MLflow REST API via the ingress (as ingress.users[0]): unreachable serves the model's storageUri, a missing alias is an error naming the model; when false, each model needs a storageUri unless deployController.enabled or imageRegistry"),
        imageRegistry: z
            .string()
            .regex(/^[a-z0-9.-]+(:\d+)?(\/[a-z0-9._-]+)*$/, "must be a registry/repository prefix such as registry.example.com/ml")
            .optional()
            .describe("image mode: build and push `<prefix>/<model>:<version>` per model at `pulumi up` (needs Docker) and serve that image"),
    })
    .superRefine((s, ctx) => {
        if (s.installKServe && !s.enabled) {
            conflict(ctx, s, { installKServe: "has no effect while serving.enabled is false: nothing would be served", enabled: "must be true when serving.installKServe is" });
        }
        if (s.imageRegistry !== undefined) {
            s.models.forEach((m, i) => {
                if (m.storageUri !== undefined) conflict(ctx, s, { [`models.${i}.storageUri`]: "has no effect in image mode (serving.imageRegistry): the image carries the model", imageRegistry: `makes models.${i}.storageUri unused` });
                if (m.canary !== undefined) conflict(ctx, s, { [`models.${i}.canary`]: "is not supported in image mode (serving.imageRegistry): a canary is an s3:// model directory", imageRegistry: `cannot serve models.${i}.canary` });
            });
        }
    })
    .describe("model serving with KServe");

export type ServingConfig = z.infer<typeof servingSchema>;
export type ServedModelConfig = z.infer<typeof servedModelSchema>;
