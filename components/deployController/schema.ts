// The `deployController` config slice: keeps each serving.models InferenceService on the version its
// registry alias points at.
import { z } from "zod";
import { CONFIG_DEFAULTS } from "../../shared/controllerConfig";
import { image } from "../fields";
import { CONTROLLER_NODE_IMAGE } from "../images";

export const deployControllerSchema = z
    .strictObject({
        enabled: z.boolean().default(false).describe("follow each serving.models alias with the deploy controller (needs serving with ≥1 model)"),
        pollIntervalSeconds: z
            .number()
            .int()
            .min(5, "must be at least 5")
            .max(3600, "must be at most 3600")
            .default(CONFIG_DEFAULTS.pollIntervalSeconds)
            .describe("registry poll interval, the safety net behind webhooks"),
        webhooks: z.boolean().default(true).describe("also react to signed `model_version_alias.*` registry webhooks; turns on the tracking server's webhook settings"),
        image: image.default(CONTROLLER_NODE_IMAGE).describe("Node.js image the controller bundle runs on"),
    })
    .describe("the registry deploy controller");

export type DeployControllerConfig = z.infer<typeof deployControllerSchema>;
