// The Service proxy's data path (./serviceProxy.ts), in a worker thread: listens on each Service port's
// loopback port and pipes every connection to a random ready endpoint of that port, as the main
// thread last told it; a connection to a port with no ready endpoint is reset, as kube-proxy rejects it.
import * as net from "net";
import { parentPort } from "worker_threads";
import type { ProxyMessage } from "./serviceProxy";

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
let routes: Record<string, number[]> = {};

function forward(key: string, socket: net.Socket): void {
    const ready = routes[key] ?? [];
    if (!ready.length) {
        socket.resetAndDestroy();
        return;
    }
    const upstream = net.connect({ host: "127.0.0.1", port: ready[Math.floor(Math.random() * ready.length)] });
    sockets.add(socket).add(upstream);
    const done = () => {
        socket.destroy();
        upstream.destroy();
        sockets.delete(socket);
        sockets.delete(upstream);
    };
    socket.setNoDelay(true);
    upstream.setNoDelay(true);
    socket.pipe(upstream).pipe(socket);
    socket.once("error", done).once("close", done);
    upstream.once("error", done).once("close", done);
}

parentPort!.on("message", async (m: ProxyMessage) => {
    if ("listen" in m) {
        try {
            for (const { key, localPort } of m.listen) {
                const server = net.createServer((socket) => forward(key, socket));
                await new Promise<void>((resolve, reject) => {
                    server.once("error", reject);
                    server.listen(localPort, "127.0.0.1", () => resolve());
                });
                servers.push(server);
            }
            parentPort!.postMessage({ listening: true });
        } catch (e) {
            parentPort!.postMessage({ error: (e as Error).message });
        }
    } else if ("routes" in m) routes = m.routes;
    else {
        for (const s of sockets) s.destroy();
        await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
        process.exit(0);
    }
});
