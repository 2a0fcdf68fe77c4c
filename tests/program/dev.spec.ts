import assert from "assert/strict";
import { describeStack } from "./stackSpec";

describeStack("dev", (ctx) => {
    it("runs one replica of everything with small requests and no anti-affinity", () => {
        const tracking = ctx().get("Deployment", "mlflow-server");
        assert.equal(tracking.spec.replicas, 1);
        assert.equal(tracking.spec.template.spec.affinity, undefined);
        assert.equal(tracking.spec.template.spec.containers[0].resources.requests.cpu, "100m");
        assert.equal(ctx().get("StatefulSet", "mlflow-postgres").spec.volumeClaimTemplates[0].spec.resources.requests.storage, "5Gi");
        assert.equal(ctx().objects.filter((o) => o.kind === "HorizontalPodAutoscaler").length, 0);
    });
});
