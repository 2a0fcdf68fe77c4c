import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { Database, DatabaseArgs } from "../../components/database";
import { databaseSchema } from "../../components/database/schema";
import { DEFAULT_IMAGES } from "../../components/images";
import { assertRestricted, assertSelects, find, installMocks, isSecretValue, only, out, resetRegistry, settle, smallResourcesWithScratch, T, unsecret } from "../harness";

type DatabaseInput = z.input<typeof databaseSchema>;

const fixture = (config: DatabaseInput = {}, password?: pulumi.Input<string>): DatabaseArgs => ({
    namespace: "ml",
    config: databaseSchema.parse({ storageSize: "7Gi", storageClass: "fast-ssd", maxConnections: 120, resources: smallResourcesWithScratch, ...config }),
    password,
    retainOnDestroy: true,
});

async function build(name: string, config: DatabaseInput = {}, password?: pulumi.Input<string>) {
    const db = new Database(name, fixture(config, password), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await out(db.host);
    await out(db.passwordSecretName);
    return db;
}

describe("Database", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("runs the official postgres image as a StatefulSet with a retained, templated PVC", async () => {
        const db = await build("pg-sts");
        await settle(db.statefulSet!);
        const sts = only(T.StatefulSet, "pg-sts-statefulset").inputs;
        const c = sts.spec.template.spec.containers[0];
        assert.equal(c.image, DEFAULT_IMAGES.postgres);
        assert.doesNotMatch(c.image, /bitnami/);
        assert.deepEqual(sts.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: "Retain", whenScaled: "Retain" });
        const pvc = sts.spec.volumeClaimTemplates[0];
        assert.equal(pvc.spec.resources.requests.storage, "7Gi");
        assert.equal(pvc.spec.storageClassName, "fast-ssd");
        assert.ok(c.volumeMounts.some((m: any) => m.name === pvc.metadata.name && m.mountPath === "/var/lib/postgresql/data"));
        assert.equal(c.env.find((e: any) => e.name === "PGDATA").value, "/var/lib/postgresql/data/pgdata");
        // A headless Service governs the StatefulSet.
        const svc = only(T.Service, "pg-sts-svc").inputs;
        assert.equal(svc.spec.clusterIP, "None");
        assert.equal(sts.spec.serviceName, svc.metadata.name);
    });

    it("keeps fsync, synchronous_commit and full_page_writes on", async () => {
        await build("pg-durable");
        const args: string[] = only(T.StatefulSet, "pg-durable-statefulset").inputs.spec.template.spec.containers[0].args;
        const settings = args.filter((_, i) => args[i - 1] === "-c");
        for (const s of ["fsync=on", "synchronous_commit=on", "full_page_writes=on", "max_connections=120"]) assert.ok(settings.includes(s), s);
        assert.ok(!settings.some((s) => /=(off|false|0)$/.test(s)), "no durability setting may be off");
    });

    it("passes the generated password as a file, never as an env value", async () => {
        const db = await build("pg-pass");
        const spec = only(T.StatefulSet, "pg-pass-statefulset").inputs.spec.template.spec;
        const env = spec.containers[0].env;
        assert.equal(env.find((e: any) => e.name === "POSTGRES_PASSWORD_FILE").value, "/run/secrets/postgres/password");
        assert.equal(env.find((e: any) => e.name === "POSTGRES_PASSWORD"), undefined);
        const vol = spec.volumes.find((v: any) => v.name === "credentials");
        assert.equal(vol.secret.secretName, await out(db.passwordSecretName));
        const secret = only(T.Secret, "pg-pass-credentials").inputs;
        assert.ok(isSecretValue(secret.stringData));
        assert.equal(unsecret(secret.stringData).password.length, 32);
        assert.equal(await pulumi.isSecret(db.password), true);
        assert.equal(only(T.RandomPassword, "pg-pass-password").inputs.special, true);
    });

    it("probes with pg_isready, differs liveness from readiness, and allows a clean shutdown", async () => {
        await build("pg-probes");
        const spec = only(T.StatefulSet, "pg-probes-statefulset").inputs.spec.template.spec;
        const c = spec.containers[0];
        assert.equal(c.readinessProbe.exec.command[0], "pg_isready");
        assert.equal(c.startupProbe.exec.command[0], "pg_isready");
        assert.notDeepEqual(c.livenessProbe, c.readinessProbe);
        assert.ok(spec.terminationGracePeriodSeconds >= 60);
        assert.match(c.lifecycle.preStop.exec.command.join(" "), /pg_ctl stop .*--mode=fast/);
        assertRestricted(spec, assert);
        const writable = c.volumeMounts.map((m: any) => m.mountPath);
        for (const p of ["/var/run/postgresql", "/tmp"]) assert.ok(writable.includes(p), `${p} must be writable`);
    });

    it("has a PDB that never blocks a node drain", async () => {
        await build("pg-pdb");
        const pdb = only(T.PDB, "pg-pdb-pdb").inputs;
        assert.equal(pdb.spec.maxUnavailable, 1);
        assert.equal(pdb.spec.unhealthyPodEvictionPolicy, "AlwaysAllow");
        assert.equal(pdb.spec.minAvailable, undefined);
    });

    it("admits only labelled database clients on 5432 and tells clients how to reach it", async () => {
        const db = await build("pg-net");
        const policy = only(T.NetworkPolicy, "pg-net-netpol").inputs;
        assert.deepEqual(policy.spec.policyTypes, ["Ingress", "Egress"]);
        assert.deepEqual(policy.spec.ingress, [{ from: [{ podSelector: { matchLabels: { "mlflow-platform.io/database-client": "true" } } }], ports: [{ protocol: "TCP", port: 5432 }] }]);
        assert.equal(policy.spec.egress.length, 1, "DNS only");
        const podLabels = only(T.StatefulSet, "pg-net-statefulset").inputs.spec.template.metadata.labels;
        const egress: any = await out(db.clientEgress);
        assertSelects(egress.to[0].podSelector.matchLabels, podLabels, "client egress must reach the database pods");
        assertSelects(policy.spec.podSelector.matchLabels, podLabels, "policy must select the database pods");
    });

    it("in external mode creates only the credentials Secret and points at the given host", async () => {
        const db = await build("pg-ext", { mode: "external", host: "pg.example.com", port: 6432 }, pulumi.secret("p@ss:w/rd%#"));
        assert.equal(find(T.StatefulSet).filter((r) => r.name.startsWith("pg-ext")).length, 0);
        assert.equal(find(T.RandomPassword, "pg-ext-password").length, 0);
        assert.equal(await out(db.host), "pg.example.com");
        assert.equal(await out(db.port), 6432);
        assert.deepEqual(await out(db.clientEgress), { to: [{ ipBlock: { cidr: "0.0.0.0/0" } }], ports: [{ protocol: "TCP", port: 6432 }] });
        assert.equal(unsecret(only(T.Secret, "pg-ext-credentials").inputs.stringData).password, "p@ss:w/rd%#");
        assert.equal(await pulumi.isSecret(db.password), true);
    });
});
