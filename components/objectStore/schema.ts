// The `objectStore` config slice: where MLflow keeps artifacts and the backups go, in-cluster MinIO or any S3.
import { z } from "zod";
import { BUCKET, bucket, conflict, dnsName, image, missing, resources, size } from "../fields";
import { DEFAULT_IMAGES } from "../images";

export const objectStoreSchema = z
    .strictObject({
        mode: z.enum(["minio", "s3"]).default("minio").describe("`minio` runs MinIO in the cluster; `s3` uses an existing S3-compatible endpoint"),
        image: image.default(DEFAULT_IMAGES.minio).describe("MinIO server image (minio mode; a community build of the patched release)"),
        clientImage: image.default(DEFAULT_IMAGES.minioClient).describe("`mc` image of the provisioning Job and the backup upload"),
        storageSize: size.default("20Gi").describe("MinIO PVC size (minio mode; retained on delete and scale-down)"),
        storageClass: dnsName("a StorageClass name").optional().describe("StorageClass of the MinIO PVC").meta({ defaultText: "the cluster's default" }),
        bucket: bucket.default("mlflow").describe("artifact bucket (created versioned and private in minio mode; must exist in s3 mode)"),
        backupBucket: bucket.optional().describe("bucket for database dumps and the artifact backup (under `artifacts/`), written only by the two backup users").meta({ defaultText: "`<bucket>-backups`" }),
        resources: resources(
            { cpu: "250m", memory: "512Mi", "ephemeral-storage": "256Mi" },
            { cpu: "1", memory: "1Gi", "ephemeral-storage": "1Gi" },
        ).describe("requests and limits of the MinIO container (minio mode)"),
        endpoint: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional().describe("S3 endpoint URL (required in s3 mode), e.g. https://s3.us-east-1.amazonaws.com"),
        region: z.string().regex(/^[a-z0-9-]{2,32}$/, "must be a region name such as us-east-1").default("us-east-1").describe("S3 region"),
    })
    .transform((o) => ({ ...o, backupBucket: o.backupBucket ?? `${o.bucket}-backups` }))
    .superRefine((o, ctx) => {
        if (o.mode === "s3" && o.endpoint === undefined) missing(ctx, "endpoint", 'required when objectStore.mode is "s3" (e.g. https://s3.us-east-1.amazonaws.com)');
        if (!BUCKET.test(o.backupBucket)) {
            conflict(ctx, o, { backupBucket: "must be an S3 bucket name (3-63 of a-z 0-9 . -); set it explicitly if `<bucket>-backups` is too long", bucket: `is too long to derive backupBucket ("${o.backupBucket}"); set objectStore.backupBucket` });
        } else if (o.backupBucket === o.bucket) {
            conflict(ctx, o, { backupBucket: "must differ from objectStore.bucket", bucket: "must differ from objectStore.backupBucket" });
        }
    })
    .describe("the artifact store");

export type ObjectStoreConfig = z.infer<typeof objectStoreSchema>;
