// The shared builders of components/kube.ts that every component relies on for its identity.
import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { Database } from "../../components/database";
import { databaseSchema } from "../../components/database/schema";
import { cronIntervalSeconds } from "../../components/fields";
import { labels, selectorLabels } from "../../components/kube";
import { installMocks, out } from "../harness";

describe("component identity (components/kube.ts)", () => {
    before(() => installMocks());

    it("labels the owning component and the workload apart; selectors use only the workload and instance", () => {
        assert.deepEqual(labels("database", "postgres", "mlflow"), {
            "app.kubernetes.io/name": "postgres",
            "app.kubernetes.io/instance": "mlflow",
            "app.kubernetes.io/component": "database",
            "app.kubernetes.io/part-of": "mlflow-platform",
            "app.kubernetes.io/managed-by": "pulumi",
        });
        assert.deepEqual(selectorLabels("postgres", "mlflow"), { "app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": "mlflow" });
    });

    it("keeps a renamed component's resources: the old type token is an alias of the new URN", async () => {
        const db = new Database("alias-db", { namespace: "ml", config: databaseSchema.parse({}), retainOnDestroy: true }, { providers: [new k8s.Provider("alias-k8s", {})] });
        assert.match(await out(db.urn), /::mlflow-platform:database:Database::alias-db$/);
        const aliases = (await Promise.all(((db as any).__aliases as any[]).map((a) => out(a)))) as string[];
        assert.deepEqual(aliases.map((a) => a.split("::").slice(-2).join("::")), ["mlflow-platform:db:Database::alias-db"]);
    });

    it("reads a schedule's longest interval between runs, as the backup alerts' threshold needs it", () => {
        const day = 86400;
        assert.equal(cronIntervalSeconds("17 2 * * *"), day);
        assert.equal(cronIntervalSeconds("@daily"), day);
        assert.equal(cronIntervalSeconds("@midnight"), day, "robfig/cron's descriptor cron-parser spells @daily");
        assert.equal(cronIntervalSeconds("@hourly"), 3600);
        assert.equal(cronIntervalSeconds("0 3 * * 0"), 7 * day);
        assert.equal(cronIntervalSeconds("0 2 1,15 * *"), 17 * day, "the 15th to the next month's 1st, in a 31-day month");
        assert.equal(cronIntervalSeconds("@monthly"), 31 * day);
        assert.equal(cronIntervalSeconds("*/5 9-17 * * 1-5"), 2 * day + 15 * 3600 + 5 * 60, "Friday 17:55 to Monday 09:00");
        assert.equal(cronIntervalSeconds("0 2 * 1-6 *"), (31 + 31 + 31 + 30 + 31 + 30) * day + day, "June 30 to January 1 (184 days)");
        assert.equal(cronIntervalSeconds("0 0 29 2 *"), (3 * 365 + 366) * day, "leap days");
    });
});
