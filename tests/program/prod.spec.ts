import assert from "assert/strict";
import { describeStack } from "./stackSpec";

describeStack("prod", (ctx) => {
    it("autoscales ≥3 tracking pods that must land on different nodes, with bigger volumes", () => {
        const tracking = ctx().get("Deployment", "mlflow-server");
        assert.equal(tracking.spec.replicas, undefined, "the HPA owns the replica count");
        const hpa = ctx().get("HorizontalPodAutoscaler", "mlflow-hpa");
        assert.equal(hpa.spec.minReplicas, 3);
        assert.ok(tracking.spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution);
        assert.equal(ctx().get("StatefulSet", "mlflow-postgres").spec.volumeClaimTemplates[0].spec.resources.requests.storage, "100Gi");
        assert.equal(ctx().get("StatefulSet", "mlflow-minio").spec.volumeClaimTemplates[0].spec.resources.requests.storage, "500Gi");
        assert.equal(ctx().get("PodDisruptionBudget", "mlflow-tracking").spec.maxUnavailable, 1);
        const args: string[] = ctx().get("StatefulSet", "mlflow-postgres").spec.template.spec.containers[0].args;
        assert.ok(args.includes("max_connections=300"));
    });
});
