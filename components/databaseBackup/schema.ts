// The `backup` config slice: scheduled pg_dump of the MLflow database into objectStore.backupBucket.
import { z } from "zod";
import { cron, size } from "../fields";

export const backupSchema = z
    .strictObject({
        enabled: z.boolean().default(true).describe("a CronJob that dumps the database into objectStore.backupBucket"),
        schedule: cron.default("17 2 * * *").describe("cron schedule, UTC"),
        retain: z.number().int().min(1, "must be at least 1").max(365).default(7).describe("dumps kept; older ones are deleted after a successful upload"),
        scratchSize: size.default("10Gi").describe("size of the scratch volume that holds one dump"),
    })
    .describe("database backups");

export type BackupConfig = z.infer<typeof backupSchema>;
