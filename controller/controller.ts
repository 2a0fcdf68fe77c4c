// The reconcile loop: one independent schedule per followed model. Each pass reads the alias from the
// registry, reads the target, decides (decide.ts) and writes at most once. Passes of one model never
// overlap; a webhook during a pass makes another pass follow it. Success waits the poll interval; a
// failure waits a bounded exponential backoff; nothing a dependency does stops the loop.
import { backoffDelay, BackoffPolicy } from "./backoff";
import type { ModelConfig } from "../shared/controllerConfig";
import { decide, Desired, FailureStage, isRetryableKubeStatus } from "./decide";
import type { Logger } from "./log";
import type { ControllerMetrics } from "./metrics";
import type { Resolution } from "./registry";
import { ServingTarget, TargetError } from "./targets/types";

/** Where a model's alias is looked up. */
export interface AliasResolver {
    resolve(registeredModel: string, alias: string): Promise<Resolution>;
}

export interface ControllerDeps {
    readonly models: readonly { readonly model: ModelConfig; readonly target: ServingTarget }[];
    readonly registry: AliasResolver;
    readonly pollIntervalMs: number;
    readonly backoff: BackoffPolicy;
    readonly log: Logger;
    readonly metrics: ControllerMetrics;
    readonly now?: () => number;
    readonly random?: () => number;
}

interface ModelState {
    readonly model: ModelConfig;
    readonly target: ServingTarget;
    readonly log: Logger;
    timer?: NodeJS.Timeout;
    running?: Promise<void>;
    /** A trigger arrived while a pass ran (or during backoff): run again. */
    pending: boolean;
    failures: number;
    attempted: boolean;
    lastSuccessAt?: number;
    lastWarning?: string;
    lastWarningAt?: number;
    /** When the current pass started, for the liveness check. */
    passStartedAt?: number;
}

const WARNING_REPEAT_MS = 10 * 60 * 1000;

export type PassResult = "success" | "error";

export class Controller {
    private readonly states = new Map<string, ModelState>();
    private readonly now: () => number;
    private readonly random: () => number;
    private readonly startedAt: number;
    private stopping = false;
    private started = false;

    constructor(private readonly d: ControllerDeps) {
        this.now = d.now ?? Date.now;
        this.random = d.random ?? Math.random;
        this.startedAt = this.now();
        for (const { model, target } of d.models) {
            const labels = { model: model.key };
            this.states.set(model.key, { model, target, log: d.log.child({ model: model.key, registeredModel: model.registeredModel, alias: model.alias, target: target.description }), pending: false, failures: 0, attempted: false });
            for (const result of ["success", "error"]) d.metrics.reconciles.init({ ...labels, result });
            for (const operation of ["create", "patch"]) d.metrics.writes.init({ ...labels, operation });
            d.metrics.aliasMissing.set(labels, 0);
            const st = this.states.get(model.key)!;
            d.metrics.sinceSync.set(labels, () => (this.now() - (st.lastSuccessAt ?? this.startedAt)) / 1000);
            d.metrics.lastSync.set(labels, () => (st.lastSuccessAt ?? 0) / 1000);
        }
    }

    /** Starts every model's loop with an immediate pass. */
    start(): void {
        if (this.started) return;
        this.started = true;
        for (const st of this.states.values()) this.runSoon(st, "start");
    }

    /** Models that follow `<registeredModel>@<alias>`. */
    modelsFollowing(registeredModel: string, alias: string): string[] {
        return [...this.states.values()].filter((s) => s.model.registeredModel === registeredModel && s.model.alias === alias).map((s) => s.model.key);
    }

    /**
     * Asks for a pass now (a webhook). While a pass runs, another follows it; while the model is backing
     * off after failures, the pending retry picks the change up instead, so triggers never defeat the backoff.
     */
    trigger(key: string, reason: string): void {
        const st = this.states.get(key);
        if (!st || this.stopping) return;
        if (st.running || st.failures > 0) {
            st.pending = true;
            st.log.debug("pass requested; will follow the current pass or backoff", { reason });
            return;
        }
        this.runSoon(st, reason);
    }

    /** Every model has had at least one pass (whatever its outcome) and the controller is not stopping. */
    ready(): boolean {
        return this.started && !this.stopping && [...this.states.values()].every((s) => s.attempted);
    }

    /** False when a pass has hung for longer than `maxPassMs` (the process should be restarted). */
    healthy(maxPassMs: number): boolean {
        const t = this.now();
        return [...this.states.values()].every((s) => s.passStartedAt === undefined || t - s.passStartedAt <= maxPassMs);
    }

    /** Stops scheduling and waits up to `graceMs` for passes in flight. */
    async stop(graceMs: number): Promise<boolean> {
        this.stopping = true;
        for (const st of this.states.values()) clearTimeout(st.timer);
        const inFlight = [...this.states.values()].flatMap((s) => (s.running ? [s.running] : []));
        if (inFlight.length === 0) return true;
        let timer: NodeJS.Timeout | undefined;
        const done = await Promise.race([
            Promise.allSettled(inFlight).then(() => true),
            new Promise<boolean>((r) => {
                timer = setTimeout(() => r(false), graceMs);
            }),
        ]);
        clearTimeout(timer);
        return done;
    }

    private runSoon(st: ModelState, reason: string): void {
        clearTimeout(st.timer);
        st.timer = setTimeout(() => void this.run(st, reason), 0);
    }

    private schedule(st: ModelState, delayMs: number, reason: string): void {
        clearTimeout(st.timer);
        if (this.stopping) return;
        st.timer = setTimeout(() => void this.run(st, reason), delayMs);
    }

    private async run(st: ModelState, reason: string): Promise<void> {
        if (this.stopping || st.running) return;
        clearTimeout(st.timer);
        st.pending = false;
        st.passStartedAt = this.now();
        let result = "error" as PassResult;
        st.running = (async () => {
            try {
                result = await this.pass(st, reason);
            } catch (e) {
                // pass() handles every expected failure; this is a bug, logged and retried like any failure.
                st.log.error("unexpected error in reconcile pass", { error: e });
                result = "error";
            }
        })();
        await st.running;
        st.running = undefined;
        st.passStartedAt = undefined;
        st.attempted = true;
        if (this.stopping) return;
        if (result === "success") {
            if (st.pending) return this.runSoon(st, "trigger");
            this.schedule(st, this.d.pollIntervalMs, "poll");
        } else {
            const delay = backoffDelay(st.failures, this.d.backoff, this.random);
            st.log.info("retrying after backoff", { attempt: st.failures, delayMs: delay });
            this.schedule(st, delay, "retry");
        }
    }

    /** One pass. Returns the result; never throws for registry or target failures. */
    private async pass(st: ModelState, reason: string): Promise<PassResult> {
        const { model, target, log } = st;
        const labels = { model: model.key };
        const m = this.d.metrics;
        log.debug("reconcile", { reason });

        let resolution: Resolution;
        try {
            resolution = await this.d.registry.resolve(model.registeredModel, model.alias);
        } catch (e) {
            return this.failed(st, "registry", e);
        }

        const desired: Desired = resolution.kind === "serve" ? { ...resolution, artifact: target.artifactFor(resolution.version, resolution.storageUri) } : resolution;
        m.aliasMissing.set(labels, desired.kind === "absent" ? 1 : 0);

        let action;
        try {
            const observed = await target.observe();
            action = decide(desired, observed, target.canCreate);
            if (observed.exists && observed.version !== undefined && (action.type === "none" || action.type === "keep")) m.servedVersion.set(labels, Number(observed.version));
            // decide() writes only when the alias asks to serve a version (desired.kind is "serve").
            if ((action.type === "create" || action.type === "patch") && desired.kind === "serve") {
                const apply = {
                    version: action.version,
                    artifact: action.artifact,
                    storageUri: desired.storageUri,
                    source: desired.source,
                    registeredModel: model.registeredModel,
                    alias: model.alias,
                };
                if (action.type === "create") await target.create(apply);
                else await target.patch(apply);
                m.writes.inc({ ...labels, operation: action.type });
                m.servedVersion.set(labels, Number(action.version));
                log.info(action.type === "create" ? "created the serving target" : "patched the serving target", {
                    version: action.version,
                    artifact: action.artifact,
                    ...(action.type === "patch" ? { fromVersion: action.fromVersion, fromArtifact: action.fromArtifact } : {}),
                    reason,
                });
            }
        } catch (e) {
            return this.failed(st, e instanceof TargetError ? e.stage : "kubernetes", e);
        }

        // Situations that leave serving alone are logged when they start, and again every 10 minutes while they last.
        const warning = action.type === "keep" ? action.warning : desired.kind === "absent" ? `${desired.reason}; nothing is served yet` : undefined;
        const t = this.now();
        if (warning !== undefined) {
            if (st.lastWarning !== warning || t - (st.lastWarningAt ?? 0) >= WARNING_REPEAT_MS) {
                log.warn(warning);
                st.lastWarningAt = t;
            }
        } else if (st.lastWarning !== undefined) {
            log.info("serving follows the alias again", { version: desired.kind === "serve" ? desired.version : undefined });
        }
        st.lastWarning = warning;
        if (st.failures > 0) log.info("recovered", { afterFailures: st.failures });
        st.failures = 0;
        st.lastSuccessAt = this.now();
        m.reconciles.inc({ ...labels, result: "success" });
        return "success";
    }

    private failed(st: ModelState, stage: FailureStage, e: unknown): PassResult {
        st.failures += 1;
        const labels = { model: st.model.key };
        this.d.metrics.errors.inc({ ...labels, stage });
        this.d.metrics.reconciles.inc({ ...labels, result: "error" });
        const status = e instanceof TargetError ? e.status : (e as { status?: number }).status;
        const retryable = stage !== "kubernetes" || isRetryableKubeStatus(status);
        const fields = { stage, error: e, status, attempt: st.failures };
        if (retryable) st.log.warn("reconcile failed", fields);
        else st.log.error("reconcile failed (check permissions and the target's spec)", fields);
        return "error";
    }
}
