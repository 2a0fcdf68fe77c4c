// What KServe is told about the object store (components/modelServing/kserve.ts).
import assert from "assert/strict";
import { s3AnnotationsFor } from "../../../components/modelServing/kserve";

describe("ModelServing: KServe's s3 annotations", () => {
    it("derives KServe's s3 annotations from the endpoint URL", () => {
        assert.deepEqual(s3AnnotationsFor("http://minio:9000", "us-east-1"), {
            "serving.kserve.io/s3-endpoint": "minio:9000",
            "serving.kserve.io/s3-usehttps": "0",
            "serving.kserve.io/s3-verifyssl": "0",
            "serving.kserve.io/s3-region": "us-east-1",
        });
        assert.equal(s3AnnotationsFor("https://s3.example.com:8443/", "x")["serving.kserve.io/s3-endpoint"], "s3.example.com:8443");
        assert.equal(s3AnnotationsFor("https://s3.example.com", "x")["serving.kserve.io/s3-verifyssl"], "1", "TLS is verified on https endpoints");
        assert.throws(() => s3AnnotationsFor("minio:9000", "x"), /must be http:\/\/ or https:\/\//);
        assert.throws(() => s3AnnotationsFor("not a url", "x"), /is not a URL/);
    });
});
