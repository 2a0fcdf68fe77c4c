// Every third-party image the platform runs, pinned in one place (the Helm charts are pinned beside the
// components that install them). Stack config can override each one (e.g. with a digest from a
// private mirror); nothing here may be a floating tag.
/**
 * The newest MLflow that installs from PyPI with all its parts: 3.18.0's wheel requires
 * mlflow-tracing==3.18.0, which PyPI does not have (checked 2026-12-04: mlflow and mlflow-skinny 3.18.0
 * are published, mlflow-tracing stops at 3.17.2), so `pip install mlflow==3.18.0` fails. The image, the
 * local tier's venvs and the examples pin this one version.
 */
export const MLFLOW_VERSION = "3.17.2";
/** The oldest MLflow the platform runs: 3.11 fixed the CVEs of the 3.x line before it. */
export const MLFLOW_MIN_VERSION = "3.11";
/**
 * The release of the oldest supported minor that the upgrade spec (tests/e2e/13-upgrade) starts a platform
 * on and upgrades to MLFLOW_VERSION: the longest upgrade path the platform supports.
 */
export const MLFLOW_PREVIOUS_VERSION = "3.11.1";

export const DEFAULT_IMAGES = {
    /** MLflow's own `-full` image: includes psycopg2 and boto3. Run as a non-root UID by the program. */
    mlflow: `ghcr.io/mlflow/mlflow:v${MLFLOW_VERSION}-full`,
    /** Official PostgreSQL image (not Bitnami), Debian based so `pg_isready`/`pg_dump` are present. */
    postgres: "docker.io/library/postgres:17.6-bookworm",
    /**
     * MinIO upstream became source-only before publishing the CVE-2025-62506 fix; this is a community
     * build of that patched release (RELEASE.2025-10-15T17-29-55Z). Override with your own build or
     * use `objectStore.mode: s3`.
     */
    minio: "docker.io/derklaro/minio:RELEASE.2025-10-15T17-29-55Z",
    /** MinIO client used by the bucket provisioning Job. */
    minioClient: "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
} as const;

/**
 * MLServer, pinned. 1.7.1 is the last release (PyPI `mlserver` and `mlserver-mlflow`; the project is
 * unmaintained since Seldon's liquidation, SeldonIO/MLServer#2404). KServe v0.20's bundled runtime
 * still runs 1.5.0.
 */
export const MLSERVER_VERSION = "1.7.1";

/** The definition of the platform's own MLServer image: its Dockerfile and the package set it installs. */
export const MLSERVER_IMAGE_FILES = ["images/mlserver/Dockerfile", "images/mlserver/requirements.txt"] as const;
/** Where the repository's workflow (.github/workflows/images.yml) publishes it. */
export const MLSERVER_REPOSITORY = "ghcr.io/mlflow-platform/mlserver";
/**
 * `<MLServer version>-<12 hex of the sha256 of MLSERVER_IMAGE_FILES>` (scripts/lib/imageTag.ts): a change
 * to the Dockerfile or the package set needs a new tag, and tests/images/mlserver.spec.ts fails until this
 * says which.
 */
export const MLSERVER_IMAGE_TAG = `${MLSERVER_VERSION}-a666370edfb9`;

/**
 * The runtime image: the platform's own, because no published MLServer image carries an MLflow that
 * reads what MLflow 3.17 saves (Seldon's `<version>-mlflow` tags bundle an older one); the local tier
 * installs the same package set. Override with your mirror's copy or a digest.
 */
export const MLSERVER_IMAGE = `${MLSERVER_REPOSITORY}:${MLSERVER_IMAGE_TAG}`;

/**
 * Node.js of the deploy controller: the 24.x LTS line (Maintenance LTS to 2028-04-30; Node 20 left
 * upstream support on 2026-04-30), pinned to an exact patch release of the official image. The
 * controller bundle's esbuild target follows its major (components/deployController/bundle.ts), and
 * the config refuses a `deployController.image` of the official node image below that major.
 */
export const CONTROLLER_NODE_VERSION = "24.21.0";
/** The major the bundle is compiled for: the lowest Node.js the controller may run on. */
export const CONTROLLER_NODE_MAJOR = Number(CONTROLLER_NODE_VERSION.split(".")[0]);
export const CONTROLLER_NODE_IMAGE = `docker.io/library/node:${CONTROLLER_NODE_VERSION}-bookworm-slim`;
