// The `deployController` config slice: keeps each serving.models InferenceService on the version its
// registry alias points at.
import { z } from "zod";
import { CONFIG_DEFAULTS } from "../../shared/controllerConfig";
import { image, parseImage } from "../fields";
import { CONTROLLER_NODE_IMAGE, CONTROLLER_NODE_MAJOR } from "../images";

/** The official Node.js image, by any of the names a registry resolves it by. */
const OFFICIAL_NODE = /^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\/)?(?:library\/)?node$/;

/** An image to run the bundle on: the official node image's tag must name the bundle's major or a newer one. */
const nodeImage = image.superRefine((ref, ctx) => {
    const parsed = parseImage(ref);
    if (typeof parsed === "string" || parsed.tag === undefined) return;
    const name = parsed.domain ? `${parsed.domain}/${parsed.path}` : parsed.path;
    const major = /^(\d+)(?:$|[.-])/.exec(parsed.tag)?.[1];
    if (OFFICIAL_NODE.test(name) && major !== undefined && Number(major) < CONTROLLER_NODE_MAJOR) {
        ctx.addIssue({
            code: "custom",
            message: `runs Node.js ${major}, below the ${CONTROLLER_NODE_MAJOR} the controller bundle is built for: use a node:${CONTROLLER_NODE_MAJOR}.x (or newer) tag`,
        });
    }
});

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
        image: nodeImage.default(CONTROLLER_NODE_IMAGE).describe("Node.js image the controller bundle runs on"),
    })
    .describe("the registry deploy controller");

export type DeployControllerConfig = z.infer<typeof deployControllerSchema>;
