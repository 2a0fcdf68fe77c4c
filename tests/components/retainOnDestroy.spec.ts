// What `pulumi destroy` leaves behind: the resource options the stateful components register (read from
// the request the SDK sends to the engine), for both values of the stack key retainOnDestroy.
import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { Database } from "../../components/database";
import { databaseSchema } from "../../components/database/schema";
import { ObjectStore } from "../../components/objectStore";
import { objectStoreSchema } from "../../components/objectStore/schema";
import { installMocks, out, registered, resetRegistry, smallResourcesWithScratch, T } from "../harness";

/** Resource name → retainOnDelete as registered, for the Kubernetes objects a component created. */
const retention = (prefix: string) =>
    Object.fromEntries(registered.filter((r) => r.type.startsWith("kubernetes:") && r.name.startsWith(prefix)).map((r) => [`${r.type.split(":").pop()}/${r.name}`, r.options.retainOnDelete]));

async function database(name: string, retainOnDestroy: boolean) {
    const db = new Database(name, { namespace: "ml", config: databaseSchema.parse({ resources: smallResourcesWithScratch }), retainOnDestroy }, { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await Promise.all([out(db.statefulSet!.urn), out(db.passwordSecretName), out(db.service!.urn)]);
    return db;
}

async function objectStore(name: string, retainOnDestroy: boolean) {
    const store = new ObjectStore(name, { namespace: "ml", config: objectStoreSchema.parse({ resources: smallResourcesWithScratch }), retainOnDestroy }, { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await Promise.all([out(store.ready), out(store.readOnlySecretName), out(store.backupSecretName)]);
    return store;
}

describe("retainOnDestroy: what `pulumi destroy` leaves in the cluster", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("keeps PostgreSQL's StatefulSet and credentials Secret, and nothing else of the database, by default", async () => {
        await database("rd-pg", true);
        const r = retention("rd-pg");
        assert.equal(r["StatefulSet/rd-pg-statefulset"], true);
        assert.equal(r["Secret/rd-pg-credentials"], true);
        for (const [k, v] of Object.entries(r)) if (!/^(StatefulSet|Secret)\//.test(k)) assert.equal(v, undefined, `${k} goes with the stack`);
        assert.ok(Object.keys(r).length >= 6, `Service, PDB, NetworkPolicy, ServiceAccount too: ${Object.keys(r)}`);
    });

    it("keeps MinIO's StatefulSet and every credential Secret (root and the four users) by default", async () => {
        await objectStore("rd-minio", true);
        const r = retention("rd-minio");
        assert.equal(r["StatefulSet/rd-minio-statefulset"], true);
        for (const s of ["root", "readwrite", "readonly", "backup", "mirror"]) assert.equal(r[`Secret/rd-minio-${s}`], true, s);
        assert.equal(r["Job/rd-minio-provision"], undefined, "the idempotent provisioning Job goes with the stack");
    });

    it("retains nothing when the stack opts out (retainOnDestroy: false)", async () => {
        await database("rd-off-pg", false);
        await objectStore("rd-off-minio", false);
        const kept = Object.entries({ ...retention("rd-off-pg"), ...retention("rd-off-minio") }).filter(([, v]) => v === true);
        assert.deepEqual(kept, []);
        assert.equal(retention("rd-off-pg")["StatefulSet/rd-off-pg-statefulset"], false, "registered as explicitly not retained");
    });

    it("keeps the PVCs when the StatefulSet is deleted or scaled down, whatever the stack key says", async () => {
        for (const retain of [true, false]) {
            resetRegistry();
            await database(`rd-pvc-${retain}`, retain);
            await objectStore(`rd-pvc-minio-${retain}`, retain);
            const sets = registered.filter((r) => r.type === T.StatefulSet);
            assert.equal(sets.length, 2);
            for (const s of sets) {
                assert.deepEqual(s.inputs.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: "Retain", whenScaled: "Retain" }, s.name);
                assert.equal(s.inputs.spec.volumeClaimTemplates[0].metadata.name, "data");
            }
        }
    });
});
