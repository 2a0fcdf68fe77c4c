// Validates rendered objects against the Kubernetes OpenAPI schemas shipped by `kubernetes-models`
// (no hand-written schema). Returns one message per invalid object.
import { crdErrors } from "./crdSchema";
import type { KubeObject } from "./manifests";

type Model = new (data: unknown) => { validate(): void };

/** The kubernetes-models class for an apiVersion/kind, e.g. apps/v1 Deployment → kubernetes-models/apps/v1/Deployment. */
export function modelFor(apiVersion: string, kind: string): Model | undefined {
    // Core and built-in API groups come from kubernetes-models; prometheus-operator kinds from its models.
    const modulePath = apiVersion.startsWith("monitoring.coreos.com/")
        ? `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`
        : `kubernetes-models/${apiVersion}/${kind}`;
    try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const mod = require(modulePath) as Record<string, Model>;
        return mod[kind];
    } catch {
        return undefined;
    }
}

export function schemaErrors(objects: KubeObject[]): string[] {
    const errors: string[] = [];
    for (const o of objects) {
        const id = `${o.kind}/${o.metadata.name}`;
        if (o.apiVersion.startsWith("serving.kserve.io/")) {
            // KServe kinds: the pinned CRDs' openAPIV3Schema, strictly.
            errors.push(...crdErrors(o).map((e) => `${id}: ${e}`));
            continue;
        }
        const model = modelFor(o.apiVersion, o.kind);
        if (!model) {
            errors.push(`${id}: no schema for ${o.apiVersion} ${o.kind}`);
            continue;
        }
        try {
            new model(o).validate();
        } catch (e) {
            errors.push(`${id}: ${(e as Error).message}`);
        }
    }
    return errors;
}
