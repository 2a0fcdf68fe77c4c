// readinessCycles: the waits `pulumi up` could never finish, found before anything is applied.
import assert from "assert/strict";
import type { OrderedObject } from "../../scripts/cluster/applyOrder";
import { readinessCycles } from "../../scripts/cluster/readiness";

const svc = (name: string, spec: Record<string, unknown>, annotations?: Record<string, string>) => ({ apiVersion: "v1", kind: "Service", metadata: { name, namespace: "ns", ...(annotations ? { annotations } : {}) }, spec });
const deployment = (name: string, labels: Record<string, string>) => ({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name, namespace: "ns" }, spec: { template: { metadata: { labels }, spec: { containers: [] } } } });
const configMap = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "ns" }, data: {} });
const node = (urn: string, object: any, waitsFor: string[] = []): OrderedObject => ({ urn, object, waitsFor });

describe("readinessCycles", () => {
    it("finds a Service whose pods' Deployment waits for the Service through a ConfigMap", () => {
        const order = [node("s", svc("ctl", { type: "ClusterIP", selector: { app: "ctl" } })), node("c", configMap("ctl-config"), ["s"]), node("d", deployment("ctl", { app: "ctl" }), ["c"])];
        assert.deepEqual(readinessCycles(order), ["Service ns/ctl waits for ready endpoints from Deployment ns/ctl, which waits for the Service"]);
    });

    it("lets a workload wait for a Service that selects other pods, and a Service wait for pods that do not wait for it", () => {
        const order = [
            node("s", svc("tracking", { selector: { app: "tracking" } })),
            node("d", deployment("controller", { app: "controller" }), ["s"]),
            node("t", deployment("tracking", { app: "tracking" })),
        ];
        assert.deepEqual(readinessCycles(order), []);
    });

    it("does not count the Services `pulumi up` does not wait for: headless, ExternalName, skipAwait", () => {
        for (const s of [
            svc("db", { clusterIP: "None", selector: { app: "db" } }),
            svc("db", { type: "ExternalName", externalName: "x.example" }),
            svc("db", { selector: { app: "db" } }, { "pulumi.com/skipAwait": "true" }),
        ]) {
            assert.deepEqual(readinessCycles([node("s", s), node("d", { ...deployment("db", { app: "db" }), kind: "StatefulSet" }, ["s"])]), []);
        }
    });
});
