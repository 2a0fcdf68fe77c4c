// Images pinned to a version tag or a digest: `latest` and untagged references float, so two pods of
// one ReplicaSet can run different code and a rollback does not roll back.
import { ResourceValidationPolicy } from "@pulumi/policy";
import { forEachContainer, validatePodSpecs } from "./lib/workloads";

const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/;

/**
 * What is wrong with an image reference, or undefined if it is pinned. A digest pins it (whatever the
 * tag); otherwise the tag is what follows the last `:` after the last `/` (a `:` before that is a
 * registry port, as in `localhost:5000/app`).
 */
export function imageProblem(image: string): string | undefined {
    const at = image.indexOf("@");
    if (at >= 0) return DIGEST.test(image.slice(at + 1)) ? undefined : `has a malformed digest`;
    const lastSlash = image.lastIndexOf("/");
    const colon = image.indexOf(":", lastSlash + 1);
    const tag = colon < 0 ? "" : image.slice(colon + 1);
    if (tag === "") return "has no tag";
    if (tag === "latest") return "uses the floating tag latest";
    return undefined;
}

export const pinnedImages: ResourceValidationPolicy = {
    name: "workload-image-pinned",
    description:
        "Every container image, init containers included, names an explicit tag other than latest, or a digest. " +
        "Upstream: KS:container-image-tag, KL:latest-tag, PO:tagNotSpecified, CKV_K8S_14.",
    enforcementLevel: "mandatory",
    severity: "high",
    validateResource: validatePodSpecs((spec, report) => {
        forEachContainer(spec, ({ container, where }) => {
            const image = container.image;
            if (typeof image !== "string" || image === "") {
                report(`${where} has no image`);
                return;
            }
            const problem = imageProblem(image);
            if (problem) report(`${where}: image "${image}" ${problem}; pin a version tag or a digest`);
        });
    }),
};
