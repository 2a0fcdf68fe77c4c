// The registry as the deploy side sees it (shared/mlflowRegistry.ts): which s3:// directory a model
// version's source maps to, and the REST client that resolves an alias, against a fake MLflow serving
// responses recorded from MLflow 3.17.2.
import assert from "assert/strict";
import { artifactUriToS3, getModelVersionByAlias, loggedModelId, RegistryError, resolveAlias, storageUriForVersion } from "../../shared/mlflowRegistry";
import { closedPortUrl, FakeMlflow, fixture, LOGGED_MODEL_ID, PASSWORD, RUN_ID, USER } from "../fixtures/serving/fakeMlflow";

describe("MLflow registry (shared/mlflowRegistry.ts)", () => {
    const mlflow = new FakeMlflow();
    before(() => mlflow.start());
    after(() => mlflow.stop());
    beforeEach(() => (mlflow.requests.length = 0));
    const requests = mlflow.requests;

    describe("alias → s3:// storageUri mapping", () => {
        const dest = "s3://mlflow";
        const table: { source: string; loggedModel?: object; dest?: string; want: string }[] = [
            {
                source: "models:/m-abc",
                loggedModel: { model_id: "m-abc", artifact_uri: "mlflow-artifacts:/1/models/m-abc/artifacts" },
                want: "s3://mlflow/1/models/m-abc/artifacts",
            },
            {
                source: "models:/m-abc",
                loggedModel: { artifact_uri: "mlflow-artifacts:/1/models/m-abc/artifacts" },
                dest: "s3://shared-bucket/team-a/",
                want: "s3://shared-bucket/team-a/1/models/m-abc/artifacts",
            },
            { source: "models:/m-abc", loggedModel: { artifact_location: "s3://mlflow/7/models/m-abc/artifacts/" }, want: "s3://mlflow/7/models/m-abc/artifacts" },
            { source: "mlflow-artifacts:/1/0a1b/artifacts/model", want: "s3://mlflow/1/0a1b/artifacts/model" },
            { source: "mlflow-artifacts://mlflow.example.com:5000/1/0a1b/artifacts/model", want: "s3://mlflow/1/0a1b/artifacts/model" },
            { source: "s3://other-bucket/exp/models/m-x/artifacts/", want: "s3://other-bucket/exp/models/m-x/artifacts" },
        ];
        for (const row of table) {
            it(`${row.source}${row.dest ? ` with ${row.dest}` : ""} → ${row.want}`, () => {
                assert.equal(storageUriForVersion({ version: "3", source: row.source, status: "READY" }, row.dest ?? dest, row.loggedModel), row.want);
            });
        }

        const refused: { source: string; status?: string; loggedModel?: object; error: RegExp }[] = [
            { source: "runs:/0a1b/model", error: /only s3:\/\/ and mlflow-artifacts:\/ locations/ },
            { source: "file:///tmp/mlruns/1/model", error: /only s3:\/\/ and mlflow-artifacts:\/ locations/ },
            { source: "https://example.com/model.tar.gz", error: /cannot be served/ },
            { source: "models:/wine-quality/3", error: /names another registry entry/ },
            { source: "models:/m-abc", error: /logged model's artifact location is needed/ },
            { source: "models:/m-abc", loggedModel: { model_id: "m-other", artifact_uri: "s3://mlflow/x" }, error: /does not match source/ },
            { source: "models:/m-abc", loggedModel: { artifact_uri: "file:///local/mlruns/1/models/m-abc/artifacts" }, error: /only s3:\/\// },
            { source: "mlflow-artifacts:/", error: /artifact root itself/ },
            { source: "mlflow-artifacts:/1/../../etc", error: /relative path segment/ },
            { source: "s3://mlflow/1/x", status: "PENDING_REGISTRATION", error: /is PENDING_REGISTRATION, not READY/ },
            { source: "s3://Bad_Bucket/x", error: /not an s3:\/\/<bucket>/ },
        ];
        for (const row of refused) {
            it(`refuses ${row.source}${row.status ? ` (${row.status})` : ""}`, () => {
                assert.throws(
                    () => storageUriForVersion({ name: "wine-quality", version: "3", source: row.source, status: row.status ?? "READY" }, dest, row.loggedModel),
                    row.error,
                );
            });
        }

        it("maps the versions a real MLflow 3.17.2 server returned", () => {
            const logged = fixture("logged-model.json").model.info;
            const champion = fixture("alias-models-source.json").model_version;
            assert.equal(loggedModelId(champion.source), LOGGED_MODEL_ID);
            assert.equal(storageUriForVersion(champion, dest, logged), `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`);
            const legacy = fixture("alias-mlflow-artifacts-source.json").model_version;
            assert.equal(storageUriForVersion(legacy, dest), `s3://mlflow/1/${RUN_ID}/artifacts/model`);
            assert.equal(artifactUriToS3(logged.artifact_uri, "s3://mlflow"), `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`);
        });
    });

    describe("registry REST client (fake MLflow on 127.0.0.1)", () => {
        const conn = () => ({ trackingUri: mlflow.url, username: USER, password: PASSWORD, timeoutMs: 1500 });

        it("resolves an alias with a models:/m-… source through the logged model, with basic auth", async () => {
            const resolved = await resolveAlias(conn(), "wine-quality", "champion", "s3://mlflow");
            assert.deepEqual(resolved, {
                registeredModel: "wine-quality",
                alias: "champion",
                version: "1",
                source: `models:/${LOGGED_MODEL_ID}`,
                storageUri: `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`,
            });
            assert.deepEqual(
                requests.map((r) => r.path),
                ["/api/2.0/mlflow/registered-models/alias?name=wine-quality&alias=champion", `/api/2.0/mlflow/logged-models/${LOGGED_MODEL_ID}`],
            );
            assert.ok(requests.every((r) => r.authorization?.startsWith("Basic ")));
        });

        it("resolves an mlflow-artifacts:/ source without a second call", async () => {
            const resolved = await resolveAlias(conn(), "wine-quality", "legacy", "s3://mlflow");
            assert.equal(resolved.version, "3");
            assert.equal(resolved.storageUri, `s3://mlflow/1/${RUN_ID}/artifacts/model`);
            assert.equal(requests.length, 1);
        });

        it("reports MLflow's own error message, the status and the error code", async () => {
            await assert.rejects(resolveAlias(conn(), "wine-quality", "nope", "s3://mlflow"), (e: RegistryError) => {
                assert.equal(e.reason, "http");
                assert.equal(e.status, 400);
                assert.equal(e.errorCode, "INVALID_PARAMETER_VALUE");
                assert.match(e.message, /answered 400: Registered model alias nope not found/);
                return true;
            });
            await assert.rejects(getModelVersionByAlias(conn(), "nope", "champion"), /404: Registered Model with name=nope not found/);
        });

        it("fails on bad credentials without echoing them", async () => {
            await assert.rejects(resolveAlias({ ...conn(), password: "wrong-password" }, "wine-quality", "champion", "s3://mlflow"), (e: Error) => {
                assert.match(e.message, /answered 401/);
                assert.doesNotMatch(e.message, /wrong-password/);
                return true;
            });
        });

        it("gives up on an unreachable server and on a slow one (timeout)", async () => {
            await assert.rejects(
                resolveAlias({ ...conn(), trackingUri: await closedPortUrl() }, "wine-quality", "champion", "s3://mlflow"),
                (e: RegistryError) => e.reason === "unreachable" && /unreachable \(ECONNREFUSED\)/.test(e.message),
            );
            const started = Date.now();
            await assert.rejects(
                resolveAlias({ ...conn(), timeoutMs: 300 }, "wine-quality", "slow", "s3://mlflow"),
                (e: RegistryError) => e.reason === "unreachable" && /no answer within 300 ms/.test(e.message),
            );
            assert.ok(Date.now() - started < 1500, "the timeout must be short");
        });
    });
});
