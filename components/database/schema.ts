// The `database` config slice: MLflow's metadata store, in-cluster PostgreSQL or an external server.
import { z } from "zod";
import { dnsName, image, resources, size } from "../fields";
import { DEFAULT_IMAGES } from "../images";

const pgIdentifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, "must be a PostgreSQL identifier");

export const databaseSchema = z
    .strictObject({
        mode: z.enum(["in-cluster", "external"]).default("in-cluster").describe("`in-cluster` runs PostgreSQL as a StatefulSet; `external` uses an existing server"),
        image: image.default(DEFAULT_IMAGES.postgres).describe("official PostgreSQL image (in-cluster); `pg_dump` of the backups comes from it too"),
        storageSize: size.default("10Gi").describe("data PVC size (in-cluster; retained on delete and scale-down)"),
        storageClass: dnsName("a StorageClass name").optional().describe("StorageClass of the data PVC").meta({ defaultText: "the cluster's default" }),
        maxConnections: z.number().int().min(10, "must be at least 10").max(10000).default(100).describe("PostgreSQL `max_connections`; must cover the tracking server's pool budget"),
        resources: resources(
            { cpu: "250m", memory: "512Mi", "ephemeral-storage": "256Mi" },
            { cpu: "1", memory: "1Gi", "ephemeral-storage": "1Gi" },
        ).describe("requests and limits of the PostgreSQL container (in-cluster)"),
        host: dnsName("a DNS name or IPv4 address").optional().describe("external server host (required in external mode); its password is the secret `databasePassword`"),
        port: z.number().int().min(1).max(65535, "must be a TCP port (1-65535)").default(5432).describe("TCP port"),
        name: pgIdentifier.default("mlflow").describe("database name"),
        user: pgIdentifier.default("mlflow").describe("role name"),
        sslMode: z.enum(["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]).default("prefer").describe("libpq `sslmode` the clients use"),
    })
    .describe("the metadata store");

export type DatabaseConfig = z.infer<typeof databaseSchema>;
