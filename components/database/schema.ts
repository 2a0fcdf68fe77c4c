// The `database` config slice: MLflow's metadata store, in-cluster PostgreSQL or an external server.
import { z } from "zod";
import { conflict, dnsName, image, quantityOrNaN, resources, size } from "../fields";
import { DEFAULT_IMAGES } from "../images";

/** The PostgreSQL pod's emptyDirs (socket directory, /tmp), inside its ephemeral-storage limit. */
export const POSTGRES_SCRATCH = { run: "16Mi", tmp: "256Mi" } as const;
const SCRATCH_TOTAL = `${Object.values(POSTGRES_SCRATCH).reduce((n, q) => n + quantityOrNaN(q) / 2 ** 20, 0)}Mi`;

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
    .superRefine((d, ctx) => {
        const limit = d.resources.limits["ephemeral-storage"];
        if (d.mode === "in-cluster" && quantityOrNaN(limit) < quantityOrNaN(SCRATCH_TOTAL)) {
            conflict(ctx, d, { "resources.limits.ephemeral-storage": `must be at least ${SCRATCH_TOTAL}: the socket directory (${POSTGRES_SCRATCH.run}) and /tmp (${POSTGRES_SCRATCH.tmp}) emptyDirs count against it` });
        }
    })
    .describe("the metadata store");

export type DatabaseConfig = z.infer<typeof databaseSchema>;
