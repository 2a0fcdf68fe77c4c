// The local tier's kube-proxy: each Service port of the stack is a loopback port that forwards every
// connection to a ready endpoint of that Service, as the real EndpointSlice controller lists them
// (the Service's selector, the pods' readiness). Each pod listens on loopback ports of its own (the
// node's runtime allots them), so two pods of one Deployment (a rolling update's surge, a replacement
// starting while the old pod stops) never fight over a port, and a pod that is not Ready gets no
// traffic. Like kube-proxy in userspace mode: TCP only, a random ready endpoint per connection.
import * as net from "net";
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

export class ServiceProxy {
    private readonly servers: net.Server[] = [];
    /** `<namespace>/<service>/<port name>` → loopback ports of ready endpoints. */
    private routes = new Map<string, number[]>();
    private timer?: NodeJS.Timeout;
    private stopped = false;
    private readonly sockets = new Set<net.Socket>();

    constructor(
        private readonly client: KubeClient,
        private readonly ports: ProxiedPort[],
        private readonly endpointPorts: EndpointPorts,
        private readonly log: (l: string) => void = () => undefined,
    ) {}

    private static key(namespace: string, service: string, portName = ""): string {
        return `${namespace}/${service}/${portName}`;
    }

    async start(): Promise<void> {
        for (const p of this.ports) {
            const key = ServiceProxy.key(p.namespace, p.service, p.portName);
            const server = net.createServer((socket) => this.forward(key, socket));
            await new Promise<void>((resolve, reject) => {
                server.once("error", reject);
                server.listen(p.localPort, "127.0.0.1", () => resolve());
            });
            this.servers.push(server);
        }
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
        this.routes = routes;
    }

    /** Ready endpoints of a Service port (loopback ports), for tests and status lines. */
    endpoints(namespace: string, service: string, portName?: string): number[] {
        return this.routes.get(ServiceProxy.key(namespace, service, portName)) ?? [];
    }

    private forward(key: string, socket: net.Socket): void {
        const ready = this.routes.get(key) ?? [];
        if (!ready.length) {
            // No ready endpoint: the connection is refused, as kube-proxy rejects it.
            socket.resetAndDestroy();
            return;
        }
        const upstream = net.connect({ host: "127.0.0.1", port: ready[Math.floor(Math.random() * ready.length)] });
        this.sockets.add(socket).add(upstream);
        const done = () => {
            socket.destroy();
            upstream.destroy();
            this.sockets.delete(socket);
            this.sockets.delete(upstream);
        };
        socket.setNoDelay(true);
        upstream.setNoDelay(true);
        socket.pipe(upstream).pipe(socket);
        socket.once("error", done).once("close", done);
        upstream.once("error", done).once("close", done);
    }

    async stop(): Promise<void> {
        this.stopped = true;
        clearTimeout(this.timer);
        for (const s of this.sockets) s.destroy();
        await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    }
}
