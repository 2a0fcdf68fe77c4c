// The `backup` config slice: scheduled pg_dump of the MLflow database into objectStore.backupBucket.
import { z } from "zod";
import { cron } from "../fields";

export const backupSchema = z
    .strictObject({
        enabled: z.boolean().default(true).describe("a CronJob that dumps the database into objectStore.backupBucket"),
        schedule: cron.default("17 2 * * *").describe("cron schedule, UTC"),
        retain: z.number().int().min(1, "must be at least 1").max(365).default(7).describe("dumps kept, nightly ones and (counted apart, under pre-upgrade/) those taken before schema upgrades; older ones are deleted after a successful upload"),
    })
    .describe("database backups");

/**
 * Keys the slice had and no longer has, with why; the config refuses each by name (stacks/errors.ts)
 * instead of suggesting a near one.
 */
export const RETIRED_BACKUP_KEYS = {
    scratchSize: "the dump streams into objectStore.backupBucket (mc pipe) without a local spool, so there is no scratch volume to size; remove the key",
} as const;

export type BackupConfig = z.infer<typeof backupSchema>;
