import assert from "assert/strict";
import { describeStack } from "./stackSpec";

describeStack("staging", (ctx) => {
    it("is shaped like prod but smaller: two replicas spread over nodes, with PDBs", () => {
        const tracking = ctx().get("Deployment", "mlflow-server");
        assert.equal(tracking.spec.replicas, 2);
        assert.ok(tracking.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution);
        assert.equal(ctx().objects.filter((o) => o.kind === "PodDisruptionBudget").length, 3);
        assert.equal(ctx().get("StatefulSet", "mlflow-postgres").spec.volumeClaimTemplates[0].spec.resources.requests.storage, "20Gi");
        assert.match(tracking.spec.template.spec.containers[0].args.join(" "), /--allowed-hosts mlflow\.staging\.example\.com,/);
    });
});
