// A serving target: where the version an alias points at is served. The controller only needs to read
// what runs (observe), and to create or patch it; everything else is the target's business.
import type { Observed } from "../decide";

export interface Apply {
    readonly version: string;
    /** What the target runs: the storageUri, or the image for image-mode targets (`artifactFor`). */
    readonly artifact: string;
    readonly storageUri: string;
    /** The version's registry `source` (`models:/m-…`, `mlflow-artifacts:/…`). */
    readonly source: string;
    readonly registeredModel: string;
    readonly alias: string;
}

export interface ServingTarget {
    /** For logs, e.g. `InferenceService mlflow/wine`. */
    readonly description: string;
    /** False for a target that cannot be created (BrokenTarget). */
    readonly canCreate: boolean;
    /** The artifact the target must run for a version. */
    artifactFor(version: string, storageUri: string): string;
    observe(): Promise<Observed>;
    create(a: Apply): Promise<void>;
    patch(a: Apply): Promise<void>;
}

/** A failed target call; `status` is the HTTP status when the target is an API server. */
export class TargetError extends Error {
    constructor(
        message: string,
        readonly stage: "kubernetes" | "target",
        readonly status?: number,
    ) {
        super(message);
        this.name = "TargetError";
    }
}

/** Rejects with a TargetError when `p` takes longer than `ms` (the underlying call may still finish). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, stage: TargetError["stage"]): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TargetError(`${what}: no answer within ${ms} ms`, stage)), ms);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
