// (1) The ingress's basic auth in front of every kind of MLflow path: without credentials or with a wrong
// password nginx answers 401 and the server is never reached; with the generated password, 200.
import assert from "assert/strict";
import type { LocalPlatform } from "../../scripts/local/platform";
import { api, basicAuth, platformUp, wineExample } from "./fixture";

describe("e2e (1): basic auth at the ingress", function () {
    this.timeout(1_800_000); // the first test run installs everything (about 10 minutes)
    let p: LocalPlatform;
    let paths: Record<string, string>;

    before(async () => {
        p = await platformUp();
        const run = await wineExample(p);
        paths = {
            UI: "/",
            "REST API": "/api/2.0/mlflow/experiments/search?max_results=10",
            "ajax API": "/ajax-api/2.0/mlflow/experiments/search?max_results=10",
            "artifact listing": `/api/2.0/mlflow-artifacts/artifacts?path=${run.experiment_id}/models/${run.model_id}/artifacts`,
            "artifact download": `/api/2.0/mlflow-artifacts/artifacts/${run.experiment_id}/models/${run.model_id}/artifacts/MLmodel`,
            "run artifact via get-artifact": `/get-artifact?path=evaluation/confusion_matrix.json&run_uuid=${run.run_id}`,
        };
    });

    for (const kind of ["UI", "REST API", "ajax API", "artifact listing", "artifact download", "run artifact via get-artifact"]) {
        it(`${kind}: 401 without credentials and with a wrong password, 200 with the right one`, async () => {
            const none = await api(p, paths[kind], { headers: {} });
            assert.equal(none.status, 401, none.text);
            const wrong = await api(p, paths[kind], { headers: basicAuth(p.login.user, `${p.login.password}x`) });
            assert.equal(wrong.status, 401);
            const unknown = await api(p, paths[kind], { headers: basicAuth("mallory", p.login.password) });
            assert.equal(unknown.status, 401);
            const right = await api(p, paths[kind]);
            assert.equal(right.status, 200, right.text.slice(0, 300));
        });
    }

    it("names the realm, and refuses a write without credentials", async () => {
        const res = await fetch(`${p.uiUrl}/api/2.0/mlflow/experiments/create`, { method: "POST", body: JSON.stringify({ name: "intruder" }), headers: { "content-type": "application/json" } });
        assert.equal(res.status, 401);
        assert.equal(res.headers.get("www-authenticate"), 'Basic realm="MLflow"');
        const check = await api(p, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=intruder");
        assert.equal(check.status, 404);
    });
});
