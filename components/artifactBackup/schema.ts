// The `artifactBackup` config slice: a scheduled mirror of the artifact bucket into objectStore.backupBucket.
import { z } from "zod";
import { cron } from "../fields";

export const artifactBackupSchema = z
    .strictObject({
        enabled: z
            .boolean()
            .default(true)
            .describe("a CronJob that mirrors objectStore.bucket into `<objectStore.backupBucket>/artifacts/` (mc mirror --overwrite, never removes); in s3 mode with the read-write keys, which must be able to write there"),
        schedule: cron.default("47 2 * * *").describe("cron schedule, UTC"),
    })
    .describe("artifact backups");

export type ArtifactBackupConfig = z.infer<typeof artifactBackupSchema>;
