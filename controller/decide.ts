// The controller's decision, as a pure function of what the registry says (desired) and what serving
// runs (observed): create, patch, leave it, or leave it with a warning. No I/O here; the table tests in
// tests/controller/controller.spec.ts cover every row.

/** What the alias asks for. */
export type Desired =
    /**
     * The alias points at a servable version: serve `artifact` (storageUri or image) as `version`.
     * `storageUri` and the registry's `source` are not decided on; they are passed on to the target's writes.
     */
    | { readonly kind: "serve"; readonly version: string; readonly artifact: string; readonly storageUri: string; readonly source: string }
    /** The alias (or the registered model) does not exist: keep serving whatever runs. */
    | { readonly kind: "absent"; readonly reason: string }
    /** The alias points at a version serving cannot use (not READY, unmappable source): keep serving. */
    | { readonly kind: "unservable"; readonly version: string; readonly reason: string };

/** What the serving target runs now, as far as the fields the controller owns go. */
export type Observed =
    | { readonly exists: false }
    | {
          readonly exists: true;
          /** storageUri or image; undefined when the object has none. */
          readonly artifact?: string;
          /** The version annotation; undefined when missing. */
          readonly version?: string;
          /** Set when the object is in a shape the controller must not touch (e.g. an image-mode InferenceService). */
          readonly incompatible?: string;
      };

export type Action =
    | { readonly type: "create"; readonly version: string; readonly artifact: string }
    | { readonly type: "patch"; readonly version: string; readonly artifact: string; readonly fromVersion?: string; readonly fromArtifact?: string }
    | { readonly type: "none"; readonly reason: "in-sync" | "nothing-to-serve" }
    | { readonly type: "keep"; readonly warning: string };

/**
 * One decision. `canCreate` is false for a target that cannot be created (one whose Kubernetes client could not be configured).
 * Exactly one write per real difference: equal artifact and version → none.
 */
export function decide(desired: Desired, observed: Observed, canCreate: boolean): Action {
    if (desired.kind === "absent") {
        return observed.exists
            ? { type: "keep", warning: `${desired.reason}; serving is left as it is${observed.version ? ` (version ${observed.version})` : ""}` }
            : { type: "none", reason: "nothing-to-serve" };
    }
    if (desired.kind === "unservable") {
        return { type: "keep", warning: `version ${desired.version} cannot be served (${desired.reason}); serving is left as it is` };
    }
    if (!observed.exists) {
        return canCreate
            ? { type: "create", version: desired.version, artifact: desired.artifact }
            : { type: "keep", warning: `the target does not exist and this kind of target is never created; version ${desired.version} is not served` };
    }
    if (observed.incompatible) return { type: "keep", warning: `the target cannot follow the alias: ${observed.incompatible}` };
    if (observed.artifact === desired.artifact && observed.version === desired.version) return { type: "none", reason: "in-sync" };
    return {
        type: "patch",
        version: desired.version,
        artifact: desired.artifact,
        ...(observed.version !== undefined ? { fromVersion: observed.version } : {}),
        ...(observed.artifact !== undefined ? { fromArtifact: observed.artifact } : {}),
    };
}

/** Why a step failed, for metrics, logs and whether the failure is worth a backoff retry. */
export type FailureStage = "registry" | "kubernetes" | "target";

/** Kubernetes API answers worth retrying: conflicts, throttling, server errors, timeouts (status undefined). */
export function isRetryableKubeStatus(status: number | undefined): boolean {
    return status === undefined || status === 408 || status === 409 || status === 429 || status >= 500;
}
