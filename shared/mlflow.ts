// What the components, the deploy controller and the local tier agree on about MLflow's registry and
// the objects the controller writes. Pure values: importing this module creates and contacts nothing.

/** Annotation the controller writes on the target with the registry version it serves. */
export const VERSION_ANNOTATION = "mlflow-platform/model-version";
/** Field manager of every write the controller makes (server-side apply ownership). */
export const FIELD_MANAGER = "mlflow-deploy-controller";
/** The registry alias a served model follows unless its config names another. */
export const DEFAULT_ALIAS = "champion";

/** An MLflow registry alias: letters, digits, '_' and '-', at most 255; not `latest` or `v<N>` (MLflow reserves them). */
export function isMlflowAlias(alias: string): boolean {
    return /^[\w-]{1,255}$/.test(alias) && alias.toLowerCase() !== "latest" && !/^v\d+$/i.test(alias);
}
