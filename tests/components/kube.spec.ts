// The shared builders of components/kube.ts that every component relies on for its identity.
import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { Database } from "../../components/database";
import { databaseSchema } from "../../components/database/schema";
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
});
