// Ports more than one part of the platform relies on: a Service and the client that dials it, a
// container and the monitor that scrapes it. One home each.

/** The MLflow tracking server's HTTP port (container and Service). */
export const TRACKING_PORT = 5000;

/** The deploy controller's listeners: MLflow webhooks and Prometheus metrics. */
export const CONTROLLER_PORTS = { webhook: 8080, metrics: 9090 } as const;

/**
 * MLServer's ports. KServe's Service targets the first (HTTP, as :80); metrics are served on their own
 * port (settings.metrics_port, default 8082; not 8080 as KServe's runtime annotation says).
 */
export const MLSERVER_PORTS = {
    http: { name: "http", containerPort: 8080, protocol: "TCP" },
    grpc: { name: "grpc", containerPort: 9000, protocol: "TCP" },
    metrics: { name: "metrics", containerPort: 8082, protocol: "TCP" },
} as const;
