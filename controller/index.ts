// The deploy controller as a library: `run(config)` starts the reconcile loops and both HTTP listeners
// and returns a handle to stop them. `cli.ts` (the bundled entry point) wraps it with config loading,
// signals and process-level safety nets. Tests call it directly, with their own serving targets
// (`targetFactory`); `npm run local` runs the bundle as a child process against a local Kubernetes API
// stand-in instead.
import { createServer, Server } from "http";
import type { AddressInfo } from "net";
import { RegistryError } from "../shared/mlflowRegistry";
import { backoffDelay } from "./backoff";
import { targetDescription } from "./config";
import type { ControllerConfig, ModelConfig } from "../shared/controllerConfig";
import { Controller } from "./controller";
import { createLogger, Logger } from "./log";
import { controllerMetrics, ControllerMetrics } from "./metrics";
import { FileValue, RegistryClient } from "./registry";
import { opsHandler, webhookHandler } from "./server";
import { CommandServingTarget } from "./targets/command";
import { InferenceServiceTargetImpl, kubeConfig } from "./targets/kube";
import { ServingTarget, TargetError } from "./targets/types";

export interface RunOptions {
    readonly config: ControllerConfig;
    /** Builds the serving target of a model instead of the configured kind. */
    readonly targetFactory?: (model: ModelConfig) => ServingTarget;
    readonly log?: Logger;
}

export interface RunningController {
    readonly controller: Controller;
    readonly metrics: ControllerMetrics;
    /** Bound ports (useful with port 0); webhookPort is undefined without a webhook receiver. */
    readonly metricsPort: number;
    readonly webhookPort?: number;
    /** Graceful stop: no new webhooks, no new passes, in-flight passes get `shutdownGraceMs`. */
    stop(): Promise<void>;
}

/** A target whose construction failed (e.g. no service-account token): every call fails and is retried. */
class BrokenTarget implements ServingTarget {
    readonly canCreate = false;
    constructor(
        readonly description: string,
        private readonly why: string,
    ) {}
    artifactFor(): string {
        return "";
    }
    private fail(): never {
        throw new TargetError(`${this.description} is unusable: ${this.why}`, "kubernetes");
    }
    async observe(): Promise<never> {
        this.fail();
    }
    async create(): Promise<never> {
        this.fail();
    }
    async patch(): Promise<never> {
        this.fail();
    }
}

function listen(server: Server, port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
            server.off("error", reject);
            resolve((server.address() as AddressInfo).port);
        });
    });
}

function close(server: Server): Promise<void> {
    return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
    });
}

export async function run(o: RunOptions): Promise<RunningController> {
    const cfg = o.config;
    const log = o.log ?? createLogger(cfg.logLevel);
    const metrics = controllerMetrics();
    const registry = new RegistryClient({
        trackingUri: cfg.mlflow.trackingUri,
        timeoutMs: cfg.mlflow.timeoutMs,
        ...(cfg.mlflow.usernameFile ? { username: new FileValue(cfg.mlflow.usernameFile), password: new FileValue(cfg.mlflow.passwordFile!) } : {}),
        artifactsDestination: cfg.mlflow.artifactsDestination,
    });

    let kc: ReturnType<typeof kubeConfig> | undefined;
    let kcError: string | undefined;
    const builtin = (m: ModelConfig): ServingTarget => {
        const t = m.target;
        if (t.kind === "Command") return new CommandServingTarget(t, log.child({ model: m.key }));
        const description = targetDescription(t);
        if (!kc && !kcError) {
            try {
                kc = kubeConfig(cfg.kubernetes);
            } catch (e) {
                kcError = (e as Error).message;
                log.error("cannot configure the Kubernetes client", { error: e });
            }
        }
        if (!kc) return new BrokenTarget(description, kcError!);
        return new InferenceServiceTargetImpl(t, kc, cfg.kubernetes.timeoutMs);
    };
    const models = cfg.models.map((model) => ({ model, target: o.targetFactory ? o.targetFactory(model) : builtin(model) }));

    const controller = new Controller({
        models,
        registry,
        pollIntervalMs: cfg.pollIntervalSeconds * 1000,
        backoff: cfg.backoff,
        log,
        metrics,
    });

    let accepting = true;
    let listening = false;
    const commandTimeout = Math.max(0, ...cfg.models.map((m) => (m.target.kind === "Command" ? m.target.timeoutMs : 0)));
    const maxPassMs = 3 * (2 * cfg.mlflow.timeoutMs + 2 * cfg.kubernetes.timeoutMs) + commandTimeout;
    const ops = createServer(opsHandler({ controller, metrics, maxPassMs, listening: () => listening }));
    const metricsPort = await listen(ops, cfg.http.metricsPort, cfg.http.host);

    let hooks: Server | undefined;
    let webhookPort: number | undefined;
    const secret = cfg.webhook ? new FileValue(cfg.webhook.secretFile) : undefined;
    if (cfg.webhook && secret) {
        hooks = createServer(
            webhookHandler({ path: cfg.webhook.path, secret, toleranceSeconds: cfg.webhook.toleranceSeconds, controller, metrics, log, accepting: () => accepting }),
        );
        webhookPort = await listen(hooks, cfg.http.webhookPort, cfg.http.host);
    }
    listening = true;
    log.info("listening", { metricsPort, webhookPort, models: cfg.models.map((m) => m.key), pollIntervalSeconds: cfg.pollIntervalSeconds });
    controller.start();

    // Register the receiver with MLflow in the background, retrying with backoff until it works.
    let registration: NodeJS.Timeout | undefined;
    const reg = cfg.webhook?.register;
    if (secret && reg) {
        metrics.webhookRegistered.set({}, 0);
        let attempt = 0;
        const tryRegister = async () => {
            try {
                const r = await registry.ensureWebhook({ name: reg.name, url: reg.url, secret: secret.get() });
                metrics.webhookRegistered.set({}, 1);
                log.info(r.created ? "registered the MLflow webhook" : "updated the MLflow webhook", { webhookId: r.id, name: reg.name, url: reg.url });
            } catch (e) {
                attempt += 1;
                // A 4xx is configuration (e.g. the server refuses http or private receivers): ask again
                // every 10 minutes rather than every backoff step; anything else backs off as usual.
                const status = e instanceof RegistryError ? e.status : undefined;
                const delay = status !== undefined && status >= 400 && status < 500 ? 10 * 60 * 1000 : backoffDelay(attempt, cfg.backoff);
                log.warn("cannot register the MLflow webhook; polling still runs", { error: e, status, attempt, delayMs: delay });
                if (accepting) registration = setTimeout(() => void tryRegister(), delay);
            }
        };
        void tryRegister();
    }

    let stopped: Promise<void> | undefined;
    return {
        controller,
        metrics,
        metricsPort,
        webhookPort,
        stop: () =>
            (stopped ??= (async () => {
                accepting = false;
                clearTimeout(registration);
                if (hooks) await close(hooks);
                const drained = await controller.stop(cfg.shutdownGraceMs);
                if (!drained) log.warn("stopping with a reconcile pass still in flight", { graceMs: cfg.shutdownGraceMs });
                listening = false;
                await close(ops);
            })()),
    };
}
