// (3) Serving: the version the alias points at is fetched from MinIO by KServe's storage initializer and
// served by MLServer as the rendered ServingRuntime describes; a v2 inference request on wine features
// gets one prediction per row.
import assert from "assert/strict";
import type { LocalPlatform } from "../../scripts/local/platform";
import { api, basicAuth, listenAddresses, LOOPBACK, platformUp, wineExample, wineRows } from "./fixture";

describe("e2e (3): MLServer serves the champion", function () {
    this.timeout(1_800_000);
    let p: LocalPlatform;

    before(async () => {
        p = await platformUp();
        await wineExample(p);
    });

    it("loads the aliased version through the storage initializer and answers v2 inference, one prediction per row", async () => {
        const champion = await api(p, "/api/2.0/mlflow/registered-models/alias?name=wine-quality&alias=champion");
        const version = champion.json.model_version.version;
        const served = await p.serving!.waitForModel("wine-quality", 600_000, version);
        assert.match(served.storageUri, /^s3:\/\/mlflow\/\d+\/models\/m-[0-9a-f]+\/artifacts$/);
        const base = `http://127.0.0.1:${served.ports.http}/v2/models/wine-quality`;
        assert.equal((await fetch(`${base}/ready`)).status, 200);
        const rows = await wineRows(p, 8);
        const res = await fetch(`${base}/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ inputs: rows.inputs }) });
        const body = (await res.json()) as any;
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.model_name, "wine-quality");
        const [out] = body.outputs;
        assert.equal(out.shape[0], 8);
        assert.equal(out.data.length, 8);
        for (const label of out.data) assert.ok([0, 1, 2].includes(label), `class ${label}`);
        const correct = out.data.filter((x: number, i: number) => x === rows.labels[i]).length;
        assert.ok(correct >= 7, `${correct}/8 predictions match the labels`);
    });

    it("answers v2 inference through the edge, behind its login, at the model's v2 path", async () => {
        const rows = await wineRows(p, 4);
        const infer = (headers: Record<string, string>) =>
            fetch(`${p.uiUrl}/v2/models/wine-quality/infer`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify({ inputs: rows.inputs }) });
        assert.equal((await infer({})).status, 401);
        assert.equal((await infer(basicAuth(p.login.user, `${p.login.password}x`))).status, 401);
        const res = await infer(basicAuth(p.login.user, p.login.password));
        const body = (await res.json()) as any;
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.model_name, "wine-quality");
        assert.equal(body.outputs[0].data.length, 4);
        // Only the served model's own path: another model name is not routed to it.
        assert.notEqual((await fetch(`${p.uiUrl}/v2/models/other/ready`, { headers: basicAuth(p.login.user, p.login.password) })).status, 200);
    });

    it("binds the model server to loopback only", async () => {
        const served = p.serving!.served.get("wine-quality")!;
        for (const [name, port] of Object.entries(served.ports)) {
            const addresses = listenAddresses(port);
            assert.ok(addresses.includes("127.0.0.1") && addresses.every((a) => LOOPBACK.has(a)), `${name} port ${port}: ${addresses}`);
        }
    });
});
