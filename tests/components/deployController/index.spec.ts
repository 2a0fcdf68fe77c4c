// DeployController under Pulumi mocks: what is sent to Kubernetes (RBAC scope, restricted pod, probes,
// NetworkPolicy, the bundle ConfigMap, secrets as files, ServiceMonitor), that the shipped config is
// one the controller accepts, that the shipped loader runs the bundle, and ModelServing's handover of
// storageUri to the controller.
import assert from "assert/strict";
import { createHash } from "crypto";
import { gunzipSync } from "zlib";
import * as k8s from "@pulumi/kubernetes";
import { z } from "zod";
import { DeployController, DeployControllerArgs, webhookEgressRule } from "../../../components/deployController";
import { BOOT_JS, CONFIGMAP_BUDGET, controllerBundle } from "../../../components/deployController/bundle";
import { deployControllerSchema } from "../../../components/deployController/schema";
import { CONTROLLER_NODE_IMAGE } from "../../../components/images";
import { parseConfig } from "../../../controller/config";
import { assertRestricted, assertSelects, find, installMocks, isSecretValue, only, out, resetRegistry, settle, T, unsecret } from "../../harness";

const ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role";
const ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding";
const SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor";
const trackingLabels = { "app.kubernetes.io/name": "tracking", "app.kubernetes.io/instance": "mlflow" };

type Overrides = Partial<Omit<DeployControllerArgs, "config">> & { config?: z.input<typeof deployControllerSchema> };

const TEMPLATE = { metadata: { labels: { app: "wine" } }, spec: { predictor: { model: { modelFormat: { name: "mlflow" } } } } };
const fixture = ({ config, ...overrides }: Overrides = {}): DeployControllerArgs => ({
    namespace: "mlflow",
    config: deployControllerSchema.parse({ enabled: true, ...config }),
    models: [{ name: "wine", registeredModel: "wine-quality", alias: "champion", template: TEMPLATE }],
    tracking: { uri: "http://mlflow-tracking.mlflow.svc:5000", selectorLabels: trackingLabels },
    artifactsDestination: "s3://mlflow",
    prometheus: { namespace: "monitoring", serviceMonitor: true, release: "kube-prometheus-stack", scrapeInterval: "30s" },
    ...overrides,
});

async function build(name: string, overrides: Overrides = {}) {
    const c = new DeployController(name, fixture(overrides), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(c.deployment, c.configMap, c.service, c.role, c.roleBinding, c.networkPolicy, c.serviceAccount, ...(c.serviceMonitor ? [c.serviceMonitor] : []));
    return c;
}
const deploymentOf = (name: string) => only(T.Deployment, `${name}-deploy-controller`).inputs;
const configMapOf = (name: string) => only(T.ConfigMap, `${name}-code`).inputs;
const shippedConfig = (name: string) => JSON.parse(configMapOf(name).data["config.json"]);

describe("DeployController", function () {
    this.timeout(60000); // the first build bundles the controller with esbuild
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("runs one restricted controller pod of the pinned Node image, probed on /healthz and /readyz", async () => {
        await build("dc-pod");
        const d = deploymentOf("dc-pod");
        assert.equal(d.spec.replicas, 1, "one writer: no leader election");
        assert.deepEqual(d.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } }, "rollouts never run two controllers");
        const pod = d.spec.template.spec;
        assertRestricted(pod, assert);
        const [c] = pod.containers;
        assert.equal(c.image, CONTROLLER_NODE_IMAGE);
        assert.match(CONTROLLER_NODE_IMAGE, /^docker\.io\/library\/node:\d+\.\d+\.\d+-bookworm-slim$/);
        assert.equal(c.securityContext.runAsUser, 10001);
        assert.equal(pod.securityContext.runAsUser, 10001);
        assert.deepEqual(c.command, ["node", "--max-old-space-size=160", "/opt/mlflow-deploy-controller/boot.js", "--config", "/opt/mlflow-deploy-controller/config.json"]);
        assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
        assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
        assert.deepEqual(c.startupProbe.httpGet, { path: "/healthz", port: "metrics" });
        assert.deepEqual(
            c.ports.map((p: any) => [p.name, p.containerPort]),
            [
                ["webhook", 8080],
                ["metrics", 9090],
            ],
        );
        assert.ok(c.resources.limits["ephemeral-storage"] && c.resources.requests["ephemeral-storage"]);
        assert.equal(d.spec.template.metadata.labels["mlflow-platform.io/tracking-client"], "true", "the tracking server admits it");
        assert.equal(pod.volumes.find((v: any) => v.name === "tmp").emptyDir.sizeLimit, "16Mi");
    });

    it("gets an API token only from an explicit, rotated projected volume", async () => {
        const c = await build("dc-token");
        const pod = deploymentOf("dc-token").spec.template.spec;
        assert.equal(pod.automountServiceAccountToken, false);
        assert.equal(only(T.ServiceAccount, "dc-token-sa").inputs.automountServiceAccountToken, false);
        assert.equal(pod.serviceAccountName, await out(c.serviceAccount.metadata.name));
        const sources = pod.volumes.find((v: any) => v.name === "kube-api-access").projected.sources;
        assert.deepEqual(sources[0], { serviceAccountToken: { path: "token", expirationSeconds: 3600 } });
        assert.equal(sources[1].configMap.name, "kube-root-ca.crt");
        assert.equal(sources[2].downwardAPI.items[0].fieldRef.fieldPath, "metadata.namespace");
        const mount = pod.containers[0].volumeMounts.find((m: any) => m.name === "kube-api-access");
        assert.deepEqual(mount, { name: "kube-api-access", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true });
    });

    it("may only get/list/watch/patch the followed InferenceServices and create InferenceServices, in its namespace", async () => {
        await build("dc-rbac");
        const role = only(ROLE, "dc-rbac-role").inputs;
        assert.equal(role.metadata.namespace, "mlflow");
        assert.deepEqual(role.rules, [
            { apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], resourceNames: ["wine"], verbs: ["get", "list", "watch", "patch"] },
            { apiGroups: ["serving.kserve.io"], resources: ["inferenceservices"], verbs: ["create"] },
        ]);
        const rb = only(ROLE_BINDING, "dc-rbac-rolebinding").inputs;
        assert.equal(rb.metadata.namespace, "mlflow");
        assert.deepEqual(rb.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "dc-rbac-deploy-controller" });
        assert.deepEqual(rb.subjects, [{ kind: "ServiceAccount", name: "dc-rbac-deploy-controller", namespace: "mlflow" }]);
        assert.equal(find("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole").length, 0, "nothing cluster-wide");
    });

    it("ships the bundle, loader and config in one immutable, content-named ConfigMap within the size limit", async () => {
        const c = await build("dc-code");
        const cm = configMapOf("dc-code");
        assert.equal(cm.immutable, true);
        const bundle = controllerBundle();
        const total = Object.values<string>(cm.data).reduce((n, v) => n + Buffer.byteLength(v), 0) + Object.values<string>(cm.binaryData ?? {}).reduce((n, v) => n + v.length, 0);
        assert.ok(total < 1024 * 1024, `ConfigMap payload ${total} bytes must stay under 1 MiB`);
        assert.equal(cm.data["boot.js"], BOOT_JS);
        if (bundle.js.length > CONFIGMAP_BUDGET) {
            assert.equal(c.bundleCompressed, true);
            const js = gunzipSync(Buffer.from(cm.binaryData["controller.js.gz"], "base64"));
            assert.equal(createHash("sha256").update(js).digest("hex"), bundle.sha256);
        } else {
            assert.equal(cm.data["controller.js"], bundle.js.toString("utf8"));
        }
        assert.equal(cm.metadata.annotations["mlflow-platform/bundle-sha256"], bundle.sha256);
        assert.match(cm.metadata.name, /^dc-code-deploy-controller-[0-9a-f]{10}$/);
        const pod = deploymentOf("dc-code").spec.template.spec;
        assert.equal(pod.volumes.find((v: any) => v.name === "code").configMap.name, cm.metadata.name);
        console.log(`      bundle: ${bundle.js.length} bytes minified, ${c.bundleBytes} bytes shipped (${c.bundleCompressed ? "gzip" : "plain"}), ConfigMap payload ${total} bytes`);
    });

    it("ships a config the controller accepts, pointing at the tracking Service and registering the webhook", async () => {
        const c = await build("dc-config", { config: { pollIntervalSeconds: 15 } });
        const cfg = parseConfig(shippedConfig("dc-config"));
        assert.equal(cfg.mlflow.trackingUri, "http://mlflow-tracking.mlflow.svc:5000");
        assert.equal(cfg.mlflow.artifactsDestination, "s3://mlflow");
        assert.equal(cfg.mlflow.usernameFile, undefined, "the tracking Service is reached without credentials");
        assert.equal(cfg.pollIntervalSeconds, 15);
        assert.equal(cfg.logLevel, "info");
        assert.deepEqual(cfg.http, { host: "0.0.0.0", webhookPort: 8080, metricsPort: 9090 });
        assert.deepEqual(cfg.models, [{ key: "wine", registeredModel: "wine-quality", alias: "champion", target: { kind: "InferenceService", namespace: "mlflow", name: "wine", template: TEMPLATE } }]);
        assert.equal(cfg.webhook?.register?.url, "http://dc-config-deploy-controller.mlflow.svc:8080/webhooks/mlflow");
        assert.equal(cfg.webhook?.register?.url, await out(c.webhookUrl));
        assert.equal(cfg.kubernetes.server, undefined, "in-cluster service account");
    });

    it("mounts the webhook secret as a file, never as env or in the ConfigMap", async () => {
        const c = await build("dc-secrets");
        const pod = deploymentOf("dc-secrets").spec.template.spec;
        const ctr = pod.containers[0];
        assert.ok(!ctr.env.some((e: any) => e.valueFrom?.secretKeyRef || /PASSWORD|SECRET|TOKEN/i.test(e.name)));
        const hook = only(T.Secret, "dc-secrets-webhook").inputs;
        assert.ok(isSecretValue(hook.stringData), "the webhook secret stays a Pulumi secret");
        assert.equal(unsecret(hook.stringData).secret.length, 48);
        const vol = pod.volumes.find((v: any) => v.name === "webhook-secret");
        assert.equal(vol.secret.secretName, "dc-secrets-deploy-controller-webhook");
        const mount = ctr.volumeMounts.find((x: any) => x.name === "webhook-secret");
        assert.equal(mount.readOnly, true);
        const cfg = parseConfig(shippedConfig("dc-secrets"));
        assert.equal(cfg.webhook?.secretFile, `${mount.mountPath}/secret`);
        const cmText = JSON.stringify(configMapOf("dc-secrets").data["config.json"]);
        assert.ok(!cmText.includes(unsecret(hook.stringData).secret), "no secret value in the ConfigMap");
        assert.equal(await out(c.webhookSecretName!), "dc-secrets-deploy-controller-webhook");
    });

    it("NetworkPolicy: webhooks only from the tracking pods, metrics only from Prometheus; egress to MLflow, the API server and DNS", async () => {
        await build("dc-net");
        const np = only(T.NetworkPolicy, "dc-net-netpol").inputs;
        const podLabels = deploymentOf("dc-net").spec.template.metadata.labels;
        assertSelects(np.spec.podSelector.matchLabels, podLabels, "policy must select the controller pods");
        assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
        assert.deepEqual(np.spec.ingress, [
            { from: [{ podSelector: { matchLabels: trackingLabels } }], ports: [{ protocol: "TCP", port: 8080 }] },
            { from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }], ports: [{ protocol: "TCP", port: 9090 }] },
        ]);
        const [dns, ...egress] = np.spec.egress;
        assert.deepEqual(dns.ports.map((p: any) => p.port), [53, 53]);
        assert.deepEqual(egress, [
            { to: [{ podSelector: { matchLabels: trackingLabels } }], ports: [{ protocol: "TCP", port: 5000 }] },
            { to: [{ ipBlock: { cidr: "0.0.0.0/0" } }], ports: [{ protocol: "TCP", port: 443 }] },
            { to: [{ ipBlock: { cidr: "0.0.0.0/0" } }], ports: [{ protocol: "TCP", port: 6443 }] },
        ]);
    });

    it("exposes webhook and metrics on a Service, scraped by a ServiceMonitor; a PDB that never blocks a drain", async () => {
        const c = await build("dc-svc", { prometheus: { namespace: "monitoring", serviceMonitor: true, release: "prom", scrapeInterval: "30s" } });
        const svc = only(T.Service, "dc-svc-svc").inputs;
        assert.deepEqual(svc.spec.selector, c.selectorLabels);
        assert.deepEqual(svc.spec.ports.map((p: any) => [p.name, p.port, p.targetPort]), [
            ["webhook", 8080, "webhook"],
            ["metrics", 9090, "metrics"],
        ]);
        const sm = only(SERVICE_MONITOR, "dc-svc-servicemonitor").inputs;
        assert.equal(sm.metadata.labels.release, "prom");
        assert.deepEqual(sm.spec.selector.matchLabels, c.selectorLabels);
        assertSelects(sm.spec.selector.matchLabels, svc.metadata.labels, "ServiceMonitor must select the Service");
        assert.deepEqual(sm.spec.endpoints, [{ port: "metrics", path: "/metrics", scheme: "http", interval: "30s" }]);
        const pdb = only(T.PDB, "dc-svc-pdb").inputs;
        assert.equal(pdb.spec.maxUnavailable, 1);
        assert.equal(pdb.spec.unhealthyPodEvictionPolicy, "AlwaysAllow");
        assert.deepEqual(await out(c.webhookEgress), { to: [{ podSelector: { matchLabels: c.selectorLabels } }], ports: [{ protocol: "TCP", port: 8080 }] });
        assert.deepEqual(webhookEgressRule("dc-svc"), await out(c.webhookEgress), "computable before the controller exists");
    });

    it("without webhooks: no secret, no webhook port or rule, polling only", async () => {
        await build("dc-poll", { config: { webhooks: false }, prometheus: { namespace: "monitoring", serviceMonitor: false, release: "kube-prometheus-stack", scrapeInterval: "30s" } });
        assert.equal(find(T.Secret).length, 0);
        assert.equal(find(SERVICE_MONITOR).length, 0);
        assert.deepEqual(deploymentOf("dc-poll").spec.template.spec.containers[0].ports.map((p: any) => p.name), ["metrics"]);
        assert.equal(only(T.NetworkPolicy, "dc-poll-netpol").inputs.spec.ingress.length, 1);
        assert.equal(parseConfig(shippedConfig("dc-poll")).webhook, undefined);
    });
});
