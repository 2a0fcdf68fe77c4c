// KServe itself, when the platform installs it, and what its storage initializer reads: the pinned
// charts, their values, and the s3-* annotations that tell it where the object store is.
import { DEPLOYMENT_MODE } from "./inferenceService";

/** KServe, pinned: the OCI charts installed when `serving.installKServe` is on. */
export const KSERVE_VERSION = "v0.20.0";
export const KSERVE_CHARTS = {
    crd: "oci://ghcr.io/kserve/charts/kserve-crd",
    resources: "oci://ghcr.io/kserve/charts/kserve-resources",
    version: KSERVE_VERSION,
    namespace: "kserve",
} as const;

/** Values of the kserve-resources chart: the controller defaults to Standard mode. */
export const KSERVE_VALUES = { kserve: { controller: { deploymentMode: DEPLOYMENT_MODE } } } as const;

/** KServe's s3-* annotations (host:port endpoint, https and TLS verification flags, region). */
export function s3AnnotationsFor(endpoint: string, region: string): Record<string, string> {
    let url: URL;
    try {
        url = new URL(endpoint);
    } catch {
        throw new Error(`S3 endpoint "${endpoint}" is not a URL such as http://minio.mlflow.svc:9000`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`S3 endpoint "${endpoint}" must be http:// or https://`);
    const https = url.protocol === "https:";
    return {
        "serving.kserve.io/s3-endpoint": url.host,
        "serving.kserve.io/s3-usehttps": https ? "1" : "0",
        "serving.kserve.io/s3-verifyssl": https ? "1" : "0",
        "serving.kserve.io/s3-region": region,
    };
}
