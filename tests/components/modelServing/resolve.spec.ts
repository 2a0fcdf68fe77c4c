// What a served model serves at `pulumi up` (components/modelServing/resolve.ts): the registry first,
// the configured storageUri when the registry cannot answer, else an error naming the model.
import assert from "assert/strict";
import { resolveServedModel } from "../../../components/modelServing/resolve";
import { closedPortUrl, FakeMlflow, LOGGED_MODEL_ID, PASSWORD, USER } from "../../fixtures/serving/fakeMlflow";

describe("ModelServing: alias resolution at pulumi up", () => {
    const mlflow = new FakeMlflow();
    before(() => mlflow.start());
    after(() => mlflow.stop());

    describe("resolveServedModel (the Promise behind each storageUri)", () => {
        const base = () => ({
            component: "ms",
            model: "wine",
            registeredModel: "wine-quality",
            alias: "champion",
            artifactsDestination: "s3://mlflow",
            warn: (m: string) => warnings.push(m),
        });
        const warnings: string[] = [];
        beforeEach(() => (warnings.length = 0));

        it("prefers the registry, falls back to storageUri with a warning, and otherwise names the model and what to set", async () => {
            const registry = { trackingUri: mlflow.url, username: USER, password: PASSWORD, timeoutMs: 1000 };
            assert.deepEqual(await resolveServedModel({ ...base(), registry, storageUri: "s3://mlflow/old" }), {
                resolvedBy: "registry",
                storageUri: `s3://mlflow/1/models/${LOGGED_MODEL_ID}/artifacts`,
                version: "1",
            });
            assert.equal(warnings.length, 0);

            const down = { ...registry, trackingUri: await closedPortUrl() };
            assert.deepEqual(await resolveServedModel({ ...base(), registry: down, storageUri: "s3://mlflow/1/models/m-x/artifacts/" }), {
                resolvedBy: "storageUri",
                storageUri: "s3://mlflow/1/models/m-x/artifacts",
            });
            assert.match(warnings[0], /could not resolve wine-quality@champion .*unreachable.*serving the configured storageUri/);

            await assert.rejects(
                resolveServedModel({ ...base(), registry: down }),
                /model "wine": could not resolve wine-quality@champion through the MLflow registry \(.*unreachable.*\) and no storageUri is set.*set serving\.models\[\]\.storageUri for "wine"/,
            );
            await assert.rejects(resolveServedModel({ ...base() }), /model "wine" \(wine-quality@champion\) has no storageUri and no MLflow tracking URL.*serving\.resolveAliases/);
            await assert.rejects(resolveServedModel({ ...base(), storageUri: "https://bucket/x" }), /storageUri "https:\/\/bucket\/x" is invalid/);
        });
    });
});
