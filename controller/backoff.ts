// Bounded exponential backoff with jitter, for every failure the controller retries (MLflow down,
// 5xx, timeouts, Kubernetes 409/5xx): attempt n waits between half and all of
// min(max, initial × 2^(n-1)), so many replicas or models never retry in lockstep.

export interface BackoffPolicy {
    readonly initialMs: number;
    readonly maxMs: number;
}

/** The ceiling for the n-th consecutive failure (n ≥ 1): initial × 2^(n-1), capped at max. */
export function backoffCeiling(attempt: number, p: BackoffPolicy): number {
    if (!Number.isInteger(attempt) || attempt < 1) throw new Error(`attempt must be an integer ≥ 1, not ${attempt}`);
    // 2^31 overflows nothing in a double, but cap the exponent so huge attempt counts stay finite.
    return Math.min(p.maxMs, p.initialMs * 2 ** Math.min(attempt - 1, 40));
}

/** The delay before retrying after the n-th consecutive failure: "equal jitter" in [ceiling/2, ceiling]. */
export function backoffDelay(attempt: number, p: BackoffPolicy, random: () => number = Math.random): number {
    const ceiling = backoffCeiling(attempt, p);
    const r = Math.min(Math.max(random(), 0), 1);
    return Math.round(ceiling / 2 + (r * ceiling) / 2);
}
