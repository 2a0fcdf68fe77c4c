// The local tier's kube-proxy: each Service port of the stack is a loopback port that forwards every
// connection to a ready endpoint of that Service, as the real EndpointSlice controller lists them
// (the Service's selector, the pods' readiness). Each pod listens on loopback ports of its own (the
// node's runtime allots them), so two pods of one Deployment (a rolling update's surge, a replacement
// starting while the old pod stops) never fight over a port, and a pod that is not Ready gets no
// traffic. Like kube-proxy in userspace mode: TCP only, a random ready endpoint per connection. The
// forwarding runs in a worker thread of its own (./serviceProxyWorker.ts), as kube-proxy is a process
// of its own: a synchronous call in the launcher's process (a test's spawnSync of psql through the
// database's Service) cannot stall the connections it needs.
import * as path from "path";
import { Worker } from "worker_threads";
import { KubeClient } from "../cluster/kubeClient";

export interface ProxiedPort {
    service: string;
    namespace: string;
    /** The Service port's name (EndpointSlices name ports by it; a Service's only port may have none). */
    portName?: string;
    /** The loopback port clients connect to. */
    localPort: number;
}

/** Where a pod's container port listens locally: pod uid and container port → loopback port. */
export type EndpointPorts = (podUid: string, containerPort: number) => number | undefined;

/** What the worker is told: where to listen, and where each listener's ready endpoints are. */
export type ProxyMessage = { listen: { key: string; localPort: number }[] } | { routes: Record<string, number[]> } | { stop: true };

export class ServiceProxy {
    private timer?: NodeJS.Timeout;
    private stopped = false;
    private worker?: Worker;
    private lastSent = "";

    constructor(
        private readonly client: KubeClient,
        private readonly ports: ProxiedPort[],
        private readonly endpointPorts: EndpointPorts,
        private readonly log: (l: string) => void = () => undefined,
    ) {}

    static key(namespace: string, service: string, portName = ""): string {
        return `${namespace}/${service}/${portName}`;
    }

    async start(): Promise<void> {
        const ts = __filename.endsWith(".ts");
        const file = path.join(__dirname, `serviceProxyWorker.${ts ? "ts" : "js"}`);
        // Under ts-node the worker registers it too (a worker does not inherit the parent's loaders).
        const worker = ts ? new Worker(`require("ts-node/register/transpile-only"); require(${JSON.stringify(file)});`, { eval: true }) : new Worker(file);
        this.worker = worker;
        worker.unref();
        await new Promise<void>((resolve, reject) => {
            worker.once("error", reject);
            worker.once("message", (m: { listening?: true; error?: string }) => (m.error ? reject(new Error(`service proxy: ${m.error}`)) : resolve()));
            worker.postMessage({ listen: this.ports.map((p) => ({ key: ServiceProxy.key(p.namespace, p.service, p.portName), localPort: p.localPort })) } satisfies ProxyMessage);
        });
        worker.on("error", (e) => this.log(`service proxy: ${e.message}`));
        await this.refresh().catch(() => undefined);
        const poll = async () => {
            await this.refresh().catch((e) => this.log(`service proxy: ${(e as Error).message}`));
            if (!this.stopped) this.timer = setTimeout(poll, 500);
        };
        this.timer = setTimeout(poll, 500);
    }

    /** Reads every EndpointSlice of the Services it serves and keeps their ready endpoints' local ports. */
    async refresh(): Promise<void> {
        const namespaces = [...new Set(this.ports.map((p) => p.namespace))];
        const routes = new Map<string, number[]>();
        for (const ns of namespaces) {
            const slices = (await this.client.call("GET", `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`)).body.items as any[];
            for (const s of slices) {
                const service = s.metadata.labels?.["kubernetes.io/service-name"];
                if (!service) continue;
                for (const port of s.ports ?? []) {
                    const key = ServiceProxy.key(ns, service, port.name);
                    const list = routes.get(key) ?? [];
                    for (const e of s.endpoints ?? []) {
                        if (e.conditions?.ready === false || e.targetRef?.kind !== "Pod") continue;
                        const local = this.endpointPorts(e.targetRef.uid, port.port);
                        if (local !== undefined) list.push(local);
                    }
                    routes.set(key, list);
                }
            }
        }
        const table = Object.fromEntries(routes);
        const sent = JSON.stringify(table);
        if (sent !== this.lastSent) {
            this.worker?.postMessage({ routes: table } satisfies ProxyMessage);
            this.lastSent = sent;
        }
    }

    async stop(): Promise<void> {
        this.stopped = true;
        clearTimeout(this.timer);
        const w = this.worker;
        if (!w) return;
        await new Promise<void>((resolve) => {
            w.once("exit", () => resolve());
            w.postMessage({ stop: true } satisfies ProxyMessage);
            setTimeout(() => void w.terminate(), 5000).unref();
        });
    }
}
