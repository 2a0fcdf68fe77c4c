// scripts/bench/tracking.ts with real wrk against two small HTTP servers on 127.0.0.1: one answers like
// MLflow, one refuses the run the scenario needs (as the stalled platform did with its pool timeout).
// The refused target is reported as not measured; the other is measured and tabled.
import assert from "assert/strict";
import * as fs from "fs";
import { createServer, Server } from "http";
import type { AddressInfo } from "net";
import * as os from "os";
import * as path from "path";
import { benchTracking, markdownTable } from "../../scripts/bench/tracking";
import { ensureWrk } from "../../scripts/bench/wrk";

function server(refuse: boolean): Promise<{ url: string; server: Server; bodies: string[] }> {
    const bodies: string[] = [];
    const srv = createServer((req, res) => {
        let body = "";
        req.on("data", (d) => (body += d));
        req.on("end", () => {
            if (req.url === "/api/2.0/mlflow/runs/log-batch") bodies.push(body);
            if (refuse) {
                res.writeHead(400, { "content-type": "application/json" }).end('{"message": "QueuePool limit of size 2 overflow 3 reached"}');
                return;
            }
            res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ run: { info: { run_id: "r1" } } }));
        });
    });
    return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, server: srv, bodies })));
}

describe("bench: the tracking scenarios under real wrk", function () {
    this.timeout(60_000);
    let tmp: string;
    const servers: Server[] = [];
    before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bench-spec-"))));
    after(() => {
        for (const s of servers) s.close();
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("measures a target that answers, reports one whose setup is refused as not measured, and logs distinct points per request", async () => {
        const ok = await server(false);
        const refused = await server(true);
        servers.push(ok.server, refused.server);
        const targets = [{ name: "ok", url: ok.url }, { name: "refused", url: refused.url }];
        const results = await benchTracking(targets, { scenarios: ["log-batch-10-one-run"], clients: [2], rounds: 2, seconds: 1, warmupSeconds: 0, wrk: ensureWrk(), dir: tmp });
        const [a, b] = results;
        assert.equal(a.target, "ok");
        assert.equal(a.rounds.length, 2);
        assert.ok(a.rounds.every((r) => r.requests > 0 && r.non2xx === 0), JSON.stringify(a.rounds));
        assert.ok(a.requestsPerSec.min <= a.requestsPerSec.median && a.requestsPerSec.median <= a.requestsPerSec.max);
        assert.equal(b.target, "refused");
        assert.match(b.failed!, /refused: POST \/api\/2.0\/mlflow\/runs\/create answered 400: .*QueuePool/);
        assert.equal(b.rounds.length, 0);
        // Each request carries 10 metrics of its own step: no two requests log the same point.
        const steps = ok.bodies.map((x) => JSON.parse(x)).map((x) => { assert.equal(x.run_id, "r1"); assert.equal(x.metrics.length, 10); return x.metrics[0].step; });
        assert.equal(new Set(steps).size, steps.length, "two requests logged the same step");
        const table = markdownTable(results, ["ok", "refused"], "ok");
        assert.match(table, /\| log-batch-10-one-run \| 2 \| [\d.]+ \([\d.]+–[\d.]+; \d+, \d+\) \| not measured: refused: POST/);
    });
});
