import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { getModelVersionByAlias } from "../../shared/mlflowRegistry";
import { MLSERVER_PORTS } from "../../shared/ports";
import { renamedFrom } from "../kube";
import { REGISTRY_TIMEOUT_MS } from "../modelServing/resolve";
import { MLSERVER_VERSION } from "../images";
import { IMAGE_MODEL_DIR } from "../modelServing/runtime";

const [HTTP_PORT, GRPC_PORT, METRICS_PORT] = [MLSERVER_PORTS.http, MLSERVER_PORTS.grpc, MLSERVER_PORTS.metrics].map((p) => p.containerPort);

/**
 * Dockerfile lines appended to the context `mlflow models generate-dockerfile --env-manager local`
 * writes (python:<model's version>-slim, the model in /opt/ml/model, its requirements installed).
 * They add MLServer and make it the entrypoint, so the image serves the Open Inference (v2) protocol on
 * 8080, as `--enable-mlserver` did before MLflow 3.13 removed it. uvloop < 0.22: newer uvloop breaks
 * MLServer 1.7's inference workers ("There is no current event loop"). Runs as UID 10001 with every
 * write under /tmp, so the pod can keep a read-only root filesystem.
 */
export const MLSERVER_DOCKERFILE_LAYER = `
# --- added by mlflow-platform ModelImage: serve with MLServer (v2 protocol) ---
ARG MLSERVER_VERSION
RUN pip install --no-cache-dir "mlserver==\${MLSERVER_VERSION}" "mlserver-mlflow==\${MLSERVER_VERSION}" "uvloop<0.22"
ENV MLSERVER_MODEL_IMPLEMENTATION=mlserver_mlflow.MLflowRuntime \\
    MLSERVER_MODEL_URI=${IMAGE_MODEL_DIR} \\
    MLSERVER_HTTP_PORT=${HTTP_PORT} \\
    MLSERVER_GRPC_PORT=${GRPC_PORT} \\
    MLSERVER_METRICS_PORT=${METRICS_PORT} \\
    MLSERVER_METRICS_DIR=/tmp/mlserver/metrics \\
    MLSERVER_ENVIRONMENTS_DIR=/tmp/mlserver/envs \\
    HOME=/tmp \\
    MLFLOW_DISABLE_TELEMETRY=true \\
    DO_NOT_TRACK=true \\
    PYTHONDONTWRITEBYTECODE=1
EXPOSE ${HTTP_PORT} ${GRPC_PORT} ${METRICS_PORT}
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["mlserver", "start", "${IMAGE_MODEL_DIR}"]
`;

/**
 * The build-and-push script, run by /bin/sh with everything it needs in the environment: MODEL_URI,
 * IMAGE, MLSERVER_VERSION, and MLFLOW_TRACKING_URI / MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD
 * (read by the mlflow CLI; never on a command line). It is also the update command: when the previous
 * run's output records that IMAGE was built and pushed, it prints that output again instead of
 * rebuilding, so only a new version (a new IMAGE tag) rebuilds; changed credentials do not.
 */
export const BUILD_SCRIPT = `set -eu
if [ -n "\${PULUMI_COMMAND_STDOUT:-}" ] && printf '%s\\n' "$PULUMI_COMMAND_STDOUT" | grep -qxF "pushed: $IMAGE"; then
  printf '%s\\n' "$PULUMI_COMMAND_STDOUT"
  exit 0
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mlflow models generate-dockerfile --model-uri "$MODEL_URI" --output-directory "$ctx" --env-manager local >&2
cat >> "$ctx/Dockerfile" <<'DOCKERFILE'
${MLSERVER_DOCKERFILE_LAYER}DOCKERFILE
docker build --build-arg "MLSERVER_VERSION=$MLSERVER_VERSION" --tag "$IMAGE" "$ctx" >&2
docker push "$IMAGE"
echo "pushed: $IMAGE"
`;

export interface ModelImageArgs {
    /** Registered model name in the MLflow registry. */
    readonly registeredModel: string;
    /** Registry alias whose version is built (resolved through the registry REST API at `pulumi up`). */
    readonly alias: string;
    /** Tracking server URL for the mlflow CLI (MLFLOW_TRACKING_URI): the ingress URL. */
    readonly trackingUri: pulumi.Input<string>;
    /** Basic-auth user and password (MLFLOW_TRACKING_USERNAME / _PASSWORD, passed as Pulumi secrets). */
    readonly username: pulumi.Input<string>;
    readonly password: pulumi.Input<string>;
    /** Image repository prefix (`serving.imageRegistry`); docker must be logged in to it. The repository is named after the model. */
    readonly registry: string;
}

/**
 * A model image for KServe's image mode: a local command (needs the mlflow CLI and a Docker engine
 * where pulumi runs) that turns `models:/<name>/<version>` into an MLServer image and pushes it as
 * `<registry>/<image>:<version>`. The command re-runs only when the resolved version changes
 * (triggers = [version]); the output is the image by digest when the push reports one.
 */
export class ModelImage extends pulumi.ComponentResource {
    /** The version built. */
    public readonly version: pulumi.Output<string>;
    /** `<registry>/<image>:<version>`. */
    public readonly taggedImage: pulumi.Output<string>;
    /** What to deploy: `<registry>/<image>@sha256:…` when the push reported a digest, else the tag. */
    public readonly imageRef: pulumi.Output<string>;
    public readonly build: command.local.Command;

    constructor(name: string, args: ModelImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mlflow-platform:modelImage:ModelImage", name, {}, renamedFrom(opts, "mlflow-platform:serving:ModelImage"));
        const repository = `${args.registry.replace(/\/+$/, "")}/${defaultImageName(args.registeredModel)}`;

        // The version the alias points at, resolved at `pulumi up` (an async lookup turned into an Output).
        this.version = pulumi.unsecret(
            pulumi.all([args.trackingUri, args.username, args.password]).apply(async ([trackingUri, username, password]) => {
                try {
                    const mv = await getModelVersionByAlias({ trackingUri, username, password, timeoutMs: REGISTRY_TIMEOUT_MS }, args.registeredModel, args.alias);
                    return mv.version;
                } catch (e) {
                    throw new Error(
                        `ModelImage ${name}: cannot resolve ${args.registeredModel}@${args.alias} (${(e as Error).message}); ` +
                            `make the tracking server reachable from where pulumi runs`,
                    );
                }
            }),
        );
        this.taggedImage = this.version.apply((v) => `${repository}:${imageTag(v)}`);

        this.build = new command.local.Command(
            `${name}-build`,
            {
                create: BUILD_SCRIPT,
                update: BUILD_SCRIPT,
                environment: buildEnvironment({
                    modelUri: this.version.apply((v) => `models:/${args.registeredModel}/${v}`),
                    image: this.taggedImage,
                    mlserverVersion: MLSERVER_VERSION,
                    trackingUri: args.trackingUri,
                    username: args.username,
                    password: args.password,
                }),
                triggers: [this.version],
            },
            { parent: this },
        );
        // An image reference is not sensitive, even though the command's inputs include secrets.
        this.imageRef = pulumi.unsecret(pulumi.all([this.taggedImage, this.build.stdout]).apply(([tagged, stdout]) => imageReference(tagged, stdout)));

        this.registerOutputs({ version: this.version, taggedImage: this.taggedImage, imageRef: this.imageRef });
    }
}

/** The command's environment; the tracking credentials are Pulumi secrets. */
export function buildEnvironment(p: {
    modelUri: pulumi.Input<string>;
    image: pulumi.Input<string>;
    mlserverVersion: string;
    trackingUri: pulumi.Input<string>;
    username?: pulumi.Input<string>;
    password?: pulumi.Input<string>;
}): Record<string, pulumi.Input<string>> {
    return {
        MODEL_URI: p.modelUri,
        IMAGE: p.image,
        MLSERVER_VERSION: p.mlserverVersion,
        MLFLOW_TRACKING_URI: p.trackingUri,
        ...(p.username !== undefined ? { MLFLOW_TRACKING_USERNAME: pulumi.secret(p.username) } : {}),
        ...(p.password !== undefined ? { MLFLOW_TRACKING_PASSWORD: pulumi.secret(p.password) } : {}),
    };
}

/**
 * The `sha256:…` digest `docker push` reports (`<tag>: digest: sha256:<64 hex> size: <n>`), the last
 * one if several; undefined when there is none.
 */
export function parsePushDigest(stdout: string): string | undefined {
    const all = [...stdout.matchAll(/\bdigest: (sha256:[a-f0-9]{64})\b/g)];
    return all.length ? all[all.length - 1][1] : undefined;
}

/** `<repository>@sha256:…` when the push output carries a digest, else the tagged reference. */
export function imageReference(taggedImage: string, stdout: string): string {
    const digest = parsePushDigest(stdout);
    if (!digest) return taggedImage;
    const lastSlash = taggedImage.lastIndexOf("/");
    const colon = taggedImage.lastIndexOf(":");
    const repository = colon > lastSlash ? taggedImage.slice(0, colon) : taggedImage;
    return `${repository}@${digest}`;
}

/** A Docker tag for a registry version: versions are integers, so the tag is the number itself. */
export function imageTag(version: string): string {
    if (!/^[1-9][0-9]*$/.test(version)) throw new Error(`model version "${version}" is not a registry version number`);
    return version;
}

/** The default repository name for a registered model. */
export function defaultImageName(registeredModel: string): string {
    const n = registeredModel.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[._-]+|[._-]+$/g, "");
    return n || "model";
}
