// What a served model serves at `pulumi up`: the version its alias points at, looked up through the
// MLflow registry, or its configured storageUri. The lookup contacts the registry; nothing else here does.
import { parseS3Uri, resolveAlias, ResolvedModel } from "../../shared/mlflowRegistry";
import type { ServedModelState } from "./inferenceService";

/** Timeout of each registry REST call at `pulumi up`, milliseconds. */
export const REGISTRY_TIMEOUT_MS = 5000;

export interface ResolveServedModelParams {
    readonly component: string;
    readonly model: string;
    readonly registeredModel: string;
    readonly alias: string;
    /** Tracking server to ask; undefined skips the lookup. */
    readonly registry?: { trackingUri: string; username?: string; password?: string; timeoutMs: number };
    /** `s3://<bucket>[/<prefix>]`: where the tracking server stores proxied artifacts. */
    readonly artifactsDestination: string;
    /** Explicit fallback. */
    readonly storageUri?: string;
    readonly warn: (message: string) => void;
}

/**
 * Resolves one model's storageUri: through the registry when a tracking URL is given (warning and
 * falling back to the explicit storageUri if that fails), else the explicit storageUri. Rejects with
 * an Error naming the model and what to set when neither yields a location.
 */
export async function resolveServedModel(p: ResolveServedModelParams): Promise<ServedModelState> {
    const ref = `${p.registeredModel}@${p.alias}`;
    const fallback = p.storageUri !== undefined ? checkedStorageUri(p.component, `model "${p.model}"`, p.storageUri) : undefined;
    if (p.registry) {
        let resolved: ResolvedModel | undefined;
        let failure: string | undefined;
        try {
            resolved = await resolveAlias(p.registry, p.registeredModel, p.alias, p.artifactsDestination);
        } catch (e) {
            failure = (e as Error).message;
        }
        if (resolved) return { resolvedBy: "registry", storageUri: resolved.storageUri, version: resolved.version };
        if (fallback) {
            p.warn(`ModelServing ${p.component}: model "${p.model}": could not resolve ${ref} (${failure}); serving the configured storageUri ${fallback}`);
            return { resolvedBy: "storageUri", storageUri: fallback };
        }
        throw new Error(
            `ModelServing ${p.component}: model "${p.model}": could not resolve ${ref} through the MLflow registry (${failure}) ` +
                `and no storageUri is set. Make the tracking server reachable from where pulumi runs (through the ingress), ` +
                `or set serving.models[].storageUri for "${p.model}" to the s3:// location of the model version.`,
        );
    }
    if (fallback) return { resolvedBy: "storageUri", storageUri: fallback };
    throw new Error(
        `ModelServing ${p.component}: model "${p.model}" (${ref}) has no storageUri and no MLflow tracking URL to resolve the alias: ` +
            `set serving.resolveAliases or serving.models[].storageUri for "${p.model}".`,
    );
}

function checkedStorageUri(component: string, what: string, uri: string): string {
    try {
        const { bucket, key } = parseS3Uri(uri);
        if (!key) throw new Error("it names a bucket, not a model directory");
        return `s3://${bucket}/${key}`;
    } catch (e) {
        throw new Error(`ModelServing ${component}: ${what}: storageUri "${uri}" is invalid: ${(e as Error).message}`);
    }
}
