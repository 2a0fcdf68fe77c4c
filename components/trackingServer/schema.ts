// The `tracking` config slice: the MLflow tracking server and model registry.
import { z } from "zod";
import { conflict, image, parseImage, quantityOrNaN, replicas, resources, size } from "../fields";
import { DEFAULT_IMAGES, MLFLOW_MIN_VERSION } from "../images";

/** The MLflow version a tag carries (`v3.17.2-full` → [3, 17, 2]), if it carries one. */
export function taggedVersion(tag: string | undefined): number[] | undefined {
    const m = tag === undefined ? null : /^v?(\d+)\.(\d+)(?:\.(\d+))?(?:$|[-+_.])/.exec(tag);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

const LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
/** One Host header (`name`, `name:port`), or every subdomain of one (`*.name`): never a prefix pattern. */
const HOST_ENTRY = new RegExp(`^(\\*\\.)?${LABEL}(\\.${LABEL})*(:[0-9]{1,5})?$`);

/** The emptyDir of the Prometheus client's multiprocess files, beside /tmp in the same ephemeral-storage limit. */
export const METRICS_DIR_SIZE = "256Mi";

const below = (v: number[], floor: number[]) => v[0] < floor[0] || (v[0] === floor[0] && v[1] < floor[1]);

const mlflowImage = image.superRefine((ref, ctx) => {
    const parsed = parseImage(ref);
    const version = typeof parsed === "string" ? undefined : taggedVersion(parsed.tag);
    const floor = MLFLOW_MIN_VERSION.split(".").map(Number);
    if (version && below(version, floor)) {
        ctx.addIssue({
            code: "custom",
            message: `runs MLflow ${version.join(".")}, below the ${MLFLOW_MIN_VERSION} CVE floor: use MLflow ≥ ${MLFLOW_MIN_VERSION} (a tag that carries a version must be MLflow's; pin a digest for an image versioned otherwise)`,
        });
    }
});

export const trackingSchema = z
    .strictObject({
        image: mlflowImage.default(DEFAULT_IMAGES.mlflow).describe("MLflow image with psycopg2 and boto3 (the `-full` tag), run as UID 10001"),
        replicas: replicas.default(1).describe("pods when autoscaling is off; ≥2 adds hostname anti-affinity"),
        workers: z.number().int().min(1, "must be at least 1").max(32).default(2).describe("uvicorn worker processes per pod"),
        resources: resources(
            { cpu: "250m", memory: "1Gi", "ephemeral-storage": "1Gi" },
            { cpu: "2", memory: "2Gi", "ephemeral-storage": "6Gi" },
        ).describe("requests and limits of the server container"),
        tmpSizeLimit: size.default("4Gi").describe("size of the /tmp emptyDir where proxied uploads spool; must fit the ephemeral-storage limit"),
        antiAffinity: z.enum(["preferred", "required"]).default("preferred").describe("hostname anti-affinity of ≥2 pods"),
        autoscaling: z
            .strictObject({
                enabled: z.boolean().default(false).describe("a HorizontalPodAutoscaler on CPU; the Deployment then has no replica count"),
                minReplicas: replicas.default(2).describe("fewest pods under the autoscaler"),
                maxReplicas: replicas.default(4).describe("most pods under the autoscaler"),
                targetCpuPercent: z.number().int().min(10).max(100).default(70).describe("target CPU utilisation, percent of requests"),
            })
            .prefault({})
            .superRefine((a, ctx) => {
                if (a.maxReplicas < a.minReplicas) {
                    conflict(ctx, a, { maxReplicas: `must be at least minReplicas (${a.minReplicas})`, minReplicas: `must not exceed maxReplicas (${a.maxReplicas})` });
                }
            }),
        dbPoolSize: z.number().int().min(1).max(50).default(2).describe("SQLAlchemy pool per worker process (counted in the connection budget)"),
        dbMaxOverflow: z.number().int().min(0).max(50).default(3).describe("SQLAlchemy overflow connections per worker process"),
        extraAllowedHosts: z
            .array(
                z
                    .string()
                    .refine((h) => h !== "*", "`*` disables host checking")
                    // MLflow matches an entry with `*` by fnmatch: `10.*` would admit `10.evil.example`.
                    .regex(HOST_ENTRY, "must be a host name or IPv4 address, optionally with :port, or *.<domain> (a wildcard only as the whole first label)"),
            )
            .default([])
            .describe("more Host headers MLflow accepts besides the ingress host and the Service names (never `*`)"),
    })
    .superRefine((t, ctx) => {
        // /tmp and the metrics directory are emptyDirs counted against the container's ephemeral-storage limit: both must fit inside.
        const limit = t.resources.limits["ephemeral-storage"];
        if (quantityOrNaN(t.tmpSizeLimit) + quantityOrNaN(METRICS_DIR_SIZE) > quantityOrNaN(limit)) {
            conflict(ctx, t, {
                tmpSizeLimit: `must not exceed tracking.resources.limits.ephemeral-storage ("${limit}") less the ${METRICS_DIR_SIZE} metrics directory, or uploads are evicted before they fill /tmp`,
                "resources.limits.ephemeral-storage": `must be at least tracking.tmpSizeLimit ("${t.tmpSizeLimit}") plus the ${METRICS_DIR_SIZE} metrics directory, where uploads spool`,
            });
        }
    })
    .describe("the MLflow tracking server and registry");

export type TrackingConfig = z.infer<typeof trackingSchema>;
