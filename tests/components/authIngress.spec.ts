import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as bcrypt from "bcryptjs";
import { z } from "zod";
import { AuthIngress, AuthIngressArgs, PASSWORD_LENGTH } from "../../components/authIngress";
import { bcryptHash, htpasswdFile, stableSalt } from "../../components/authIngress/htpasswd";
import { EDGE_REFUSED_PATHS, INGRESS_NGINX_CHART } from "../../components/authIngress/nginx";
import { ingressSchema } from "../../components/authIngress/schema";
import { find, installMocks, isSecretValue, only, out, resetRegistry, settle, T, unsecret } from "../harness";

const Ingress = "kubernetes:networking.k8s.io/v1:Ingress";
const Release = "kubernetes:helm.sh/v3:Release";
const NGINX = "nginx.ingress.kubernetes.io";
const HASH = /^\$2y\$04\$[./A-Za-z0-9]{53}$/;

type IngressInput = z.input<typeof ingressSchema>;

const fixture = (config: IngressInput = {}): AuthIngressArgs => ({
    namespace: "ml",
    config: { proxyBodySize: "20g", ...ingressSchema.parse({ host: "mlflow.example.com", ...config }) },
    // Wired as Outputs, the way index.ts passes TrackingServer's.
    backend: { serviceName: pulumi.output("ts-tracking"), servicePort: pulumi.output(5000) },
    controllerNamespace: "ingress-nginx",
});

async function build(name: string, config: IngressInput = {}) {
    const ai = new AuthIngress(name, fixture(config), { providers: [new k8s.Provider(`${name}-k8s`, {})] });
    await settle(ai.ingress, ai.refusedIngress, ai.htpasswdSecret, ai.credentialsSecret, ...(ai.controller ? [ai.controller] : []));
    await out(ai.url);
    const ingress = only(Ingress, `${name}-ingress`).inputs;
    const htpasswd = only(T.Secret, `${name}-htpasswd`).inputs;
    const credentials = only(T.Secret, `${name}-credentials`).inputs;
    return { ai, ingress, annotations: ingress.metadata.annotations as Record<string, string>, htpasswd, credentials };
}

/** Parses `user:hash` lines. */
const parseHtpasswd = (file: string) => Object.fromEntries(file.trimEnd().split("\n").map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));

describe("AuthIngress", () => {
    before(() => installMocks());
    beforeEach(resetRegistry);

    it("authenticates with ingress-nginx basic auth against a bcrypt htpasswd Secret (key `auth`)", async () => {
        const { ai, annotations, htpasswd, credentials } = await build("ai-auth", { users: ["alice", "bob"] });
        assert.equal(annotations[`${NGINX}/auth-type`], "basic");
        assert.equal(annotations[`${NGINX}/auth-secret`], "ai-auth-ingress-htpasswd");
        assert.equal(annotations[`${NGINX}/auth-secret-type`], "auth-file");
        assert.equal(annotations[`${NGINX}/auth-realm`], "MLflow");
        assert.equal(await out(ai.htpasswdSecretName), "ai-auth-ingress-htpasswd");
        assert.equal(await out(ai.credentialsSecretName), "ai-auth-ingress-credentials");
        assert.deepEqual(await out(ai.users), ["alice", "bob"]);

        assert.deepEqual(Object.keys(unsecret(htpasswd.stringData)), ["auth"]);
        const lines = parseHtpasswd(unsecret(htpasswd.stringData).auth);
        const passwords = unsecret(credentials.stringData);
        assert.deepEqual(Object.keys(lines), ["alice", "bob"]);
        assert.deepEqual(Object.keys(passwords), ["alice", "bob"]);
        for (const user of ["alice", "bob"]) {
            assert.match(lines[user], HASH, `${user}: bcrypt cost 4 in $2y$ form`);
            assert.ok(bcrypt.compareSync(passwords[user], lines[user]), `${user}: hash matches the credentials Secret`);
        }
        assert.deepEqual(await out(ai.passwords), passwords);
    });

    it("generates a 32-character password per user", async () => {
        const { credentials } = await build("ai-gen", { users: ["gen", "other"] });
        for (const user of ["gen", "other"]) {
            const generated = only(T.RandomPassword, `ai-gen-password-${user}`).inputs;
            assert.equal(generated.length, PASSWORD_LENGTH);
            assert.equal(unsecret(credentials.stringData)[user].length, PASSWORD_LENGTH);
        }
        assert.notEqual(unsecret(credentials.stringData).gen, unsecret(credentials.stringData).other);
        // Default: one user, `mlflow`.
        const { ai } = await build("ai-default");
        assert.deepEqual(await out(ai.users), ["mlflow"]);
    });

    it("keeps every password and hash a Pulumi secret", async () => {
        const { ai, htpasswd, credentials } = await build("ai-secret", { users: ["plain", "gen"] });
        assert.equal(await pulumi.isSecret(ai.passwords), true, "passwords output");
        assert.ok(isSecretValue(htpasswd.stringData), "htpasswd stringData reaches Kubernetes as a secret");
        assert.ok(isSecretValue(credentials.stringData), "credentials stringData reaches Kubernetes as a secret");
        assert.equal(await pulumi.isSecret(ai.htpasswdSecret.stringData), true);
        for (const o of [ai.url, ai.host, ai.htpasswdSecretName, ai.credentialsSecretName, ai.users]) assert.equal(await pulumi.isSecret(o as pulumi.Output<unknown>), false);
        // Nothing secret leaks into the Ingress.
        const ingress = JSON.stringify(only(Ingress, "ai-secret-ingress").inputs);
        const passwords = Object.values(unsecret(credentials.stringData) as Record<string, string>);
        assert.ok(passwords.every((p) => !ingress.includes(p)) && !ingress.includes("$2y$"));
    });

    it("produces the same hash on every run with the same state (no Secret churn)", async () => {
        const run = async () => {
            resetRegistry();
            // A second `pulumi up`: same resource names, so the same RandomPassword state.
            const { htpasswd } = await build("ai-stable", { users: ["alice", "bob"] });
            return unsecret(htpasswd.stringData).auth as string;
        };
        const first = await run();
        assert.equal(await run(), first);
        assert.equal(only(T.RandomPassword, "ai-stable-salt-alice").inputs.length, 32);
    });

    it("routes the host to the tracking Service wired from outputs, with the nginx class by default", async () => {
        const { ingress, ai } = await build("ai-route");
        assert.equal(ingress.spec.ingressClassName, "nginx");
        const rule = ingress.spec.rules[0];
        assert.equal(rule.host, "mlflow.example.com");
        assert.deepEqual(rule.http.paths[0], { path: "/", pathType: "Prefix", backend: { service: { name: "ts-tracking", port: { number: 5000 } } } });
        assert.equal(await out(ai.serviceName), "ts-tracking");
        assert.equal(await out(ai.servicePort), 5000);
        assert.equal(ingress.metadata.namespace, "ml");
        assert.equal(ingress.metadata.labels["app.kubernetes.io/part-of"], "mlflow-platform");
        const { ingress: custom } = await build("ai-class", { className: "internal-nginx" });
        assert.equal(custom.spec.ingressClassName, "internal-nginx");
    });

    it("routes each extra path (a served model's v2 API) behind the same login, through an ExternalName Service it declares", async () => {
        const ai = new AuthIngress("ai-routes", { ...fixture(), routes: [{ name: "wine", path: "/v2/models/wine", serviceName: "wine-predictor", servicePort: 80 }] }, { providers: [new k8s.Provider("ai-routes-k8s", {})] });
        await settle(ai.ingress);
        const ingress = only(Ingress, "ai-routes-ingress").inputs;
        const paths = ingress.spec.rules[0].http.paths;
        assert.deepEqual(paths.map((p: any) => p.path), ["/", "/v2/models/wine"]);
        assert.deepEqual(paths[1], { path: "/v2/models/wine", pathType: "Prefix", backend: { service: { name: "ai-routes-edge-wine", port: { number: 80 } } } });
        assert.equal(ingress.metadata.annotations[`${NGINX}/auth-type`], "basic", "the same Ingress, so the same login");
        const svc = only(T.Service, "ai-routes-edge-wine").inputs;
        assert.deepEqual(svc.spec, { type: "ExternalName", externalName: "wine-predictor.ml.svc.cluster.local", ports: [{ name: "http", port: 80 }] });
        assert.equal(svc.metadata.namespace, "ml");
    });

    it("refuses the webhook and assistant APIs to every client of the edge with a second Ingress on the same host", async () => {
        for (const tls of [undefined, { secretName: "mlflow-example-com" }]) {
            const name = tls ? "ai-refused-tls" : "ai-refused";
            const { ingress } = await build(name, tls ? { tls } : {});
            const refused = only(Ingress, `${name}-ingress-refused`).inputs;
            // Every address is on the denylist: ingress-nginx answers 403 and never asks for a password.
            assert.equal(refused.metadata.annotations[`${NGINX}/denylist-source-range`], "0.0.0.0/0,::/0");
            assert.equal(refused.metadata.annotations[`${NGINX}/auth-type`], undefined);
            assert.equal(refused.metadata.annotations[`${NGINX}/force-ssl-redirect`], tls ? "true" : undefined);
            // Same class, host and TLS as the main Ingress, so ingress-nginx merges them into one server.
            assert.equal(refused.spec.ingressClassName, ingress.spec.ingressClassName);
            assert.deepEqual(refused.spec.tls, ingress.spec.tls);
            assert.equal(refused.spec.rules[0].host, ingress.spec.rules[0].host);
            const paths = refused.spec.rules[0].http.paths;
            assert.deepEqual(paths.map((p: any) => p.path), EDGE_REFUSED_PATHS.map((r) => r.path));
            for (const p of paths) assert.equal(p.pathType, "Prefix");
        }
        for (const p of ["/api/2.0/mlflow/webhooks", "/ajax-api/2.0/mlflow/webhooks"]) assert.ok(EDGE_REFUSED_PATHS.some((r) => r.path === p && /request forgery/.test(r.why)), p);
    });

    it("streams multi-GB artifacts: body size, long timeouts, no request or response buffering", async () => {
        const { annotations } = await build("ai-proxy");
        assert.equal(annotations[`${NGINX}/proxy-body-size`], "20g");
        assert.equal(annotations[`${NGINX}/proxy-read-timeout`], "900");
        assert.equal(annotations[`${NGINX}/proxy-send-timeout`], "900");
        assert.equal(annotations[`${NGINX}/proxy-request-buffering`], "off");
        assert.equal(annotations[`${NGINX}/proxy-buffering`], "off");
        for (const k of ["limit-rps", "limit-connections", "limit-burst-multiplier"]) assert.equal(annotations[`${NGINX}/${k}`], undefined, `${k} off by default`);
        const { annotations: custom } = await build("ai-proxy2", {
            proxyReadTimeoutSeconds: 1800,
            rateLimit: { rps: 50, burstMultiplier: 10, connections: 20 },
        });
        assert.equal(custom[`${NGINX}/proxy-read-timeout`], "1800");
        assert.equal(custom[`${NGINX}/limit-rps`], "50");
        assert.equal(custom[`${NGINX}/limit-burst-multiplier`], "10");
        assert.equal(custom[`${NGINX}/limit-connections`], "20");
    });

    describe("TLS", () => {
        it("can be off (dev): plain http URL, no tls block, no redirect", async () => {
            const { ingress, annotations, ai } = await build("ai-notls");
            assert.equal(ingress.spec.tls, undefined);
            assert.equal(await out(ai.url), "http://mlflow.example.com");
            assert.equal(await out(ai.tlsSecretName), undefined);
            assert.equal(annotations[`${NGINX}/force-ssl-redirect`], undefined);
            assert.ok(!Object.keys(annotations).some((k) => k.startsWith("cert-manager.io/")));
        });

        it("serves an existing TLS Secret", async () => {
            const { ingress, annotations, ai } = await build("ai-tls", { tls: { secretName: "mlflow-example-com" } });
            assert.deepEqual(ingress.spec.tls, [{ hosts: ["mlflow.example.com"], secretName: "mlflow-example-com" }]);
            assert.equal(annotations[`${NGINX}/force-ssl-redirect`], "true");
            assert.ok(!Object.keys(annotations).some((k) => k.startsWith("cert-manager.io/")));
            assert.equal(await out(ai.url), "https://mlflow.example.com");
            assert.equal(await out(ai.tlsSecretName), "mlflow-example-com");
        });

        it("asks a cert-manager ClusterIssuer for a certificate in <name>-ingress-tls", async () => {
            const { ingress, annotations, ai } = await build("ai-acme", { tls: { clusterIssuer: "letsencrypt-prod" } });
            assert.equal(annotations["cert-manager.io/cluster-issuer"], "letsencrypt-prod");
            assert.equal(annotations["cert-manager.io/issuer"], undefined);
            assert.deepEqual(ingress.spec.tls, [{ hosts: ["mlflow.example.com"], secretName: "ai-acme-ingress-tls" }]);
            assert.equal(await out(ai.url), "https://mlflow.example.com");
        });

        it("or a namespaced cert-manager Issuer", async () => {
            const { ingress, annotations } = await build("ai-issuer", { tls: { issuer: "internal-ca" } });
            assert.equal(annotations["cert-manager.io/issuer"], "internal-ca");
            assert.equal(annotations["cert-manager.io/cluster-issuer"], undefined);
            assert.equal(ingress.spec.tls[0].secretName, "ai-issuer-ingress-tls");
        });
    });

    describe("extra annotations", () => {
        // Snippets, reserved keys and line breaks are refused by the ingress schema (tests/stacks/config.spec.ts).
        it("passes other annotations through", async () => {
            const { annotations } = await build("ai-extra", { extraAnnotations: { [`${NGINX}/whitelist-source-range`]: "10.0.0.0/8", "example.com/team": "ml" } });
            assert.equal(annotations[`${NGINX}/whitelist-source-range`], "10.0.0.0/8");
            assert.equal(annotations["example.com/team"], "ml");
            assert.equal(annotations[`${NGINX}/auth-type`], "basic");
        });
    });

    describe("ingress-nginx controller", () => {
        it("is not installed by default", async () => {
            const { ai } = await build("ai-noctl");
            assert.equal(ai.controller, undefined);
            assert.equal(find(Release).length, 0);
        });

        it("installs a pinned chart with snippets off and the admission webhook failing closed", async () => {
            const { ai } = await build("ai-ctl", { className: "mlflow-nginx", controller: { install: true, replicas: 3 } });
            const rel = only(Release, "ai-ctl-controller");
            const r = rel.inputs;
            assert.equal(r.chart, "ingress-nginx");
            assert.equal(r.version, INGRESS_NGINX_CHART.version);
            assert.match(r.version, /^\d+\.\d+\.\d+$/, "an exact version, no range");
            assert.deepEqual(r.repositoryOpts, { repo: "https://kubernetes.github.io/ingress-nginx" });
            assert.equal(r.namespace, "ingress-nginx");
            assert.equal(r.createNamespace, true);
            const c = r.values.controller;
            assert.equal(c.allowSnippetAnnotations, false);
            assert.equal(c.config["allow-snippet-annotations"], "false");
            assert.equal(c.config["annotations-risk-level"], "High");
            assert.equal(c.enableAnnotationValidations, true);
            assert.equal(c.admissionWebhooks.enabled, true);
            assert.equal(c.admissionWebhooks.failurePolicy, "Fail");
            assert.equal(c.admissionWebhooks.service.type, "ClusterIP");
            assert.equal(c.ingressClassResource.name, "mlflow-nginx");
            assert.equal(c.ingressClassResource.default, false);
            assert.equal(c.replicaCount, 3);
            assert.equal(c.config["limit-req-status-code"], "429");
            // The Ingress waits for the release (IngressClass, webhook) without a data dependency.
            const ingress = only(Ingress, "ai-ctl-ingress");
            assert.ok(ingress.dependencies.includes(await out(ai.controller!.urn)));
        });

        it("pins a controller with the IngressNightmare fixes (≥ v1.11.5 / v1.12.1)", () => {
            const [major, minor, patch] = INGRESS_NGINX_CHART.controllerVersion.slice(1).split(".").map(Number);
            assert.equal(major, 1);
            assert.ok(minor > 12 || (minor === 12 && patch >= 1) || (minor === 11 && patch >= 5), INGRESS_NGINX_CHART.controllerVersion);
            const [cMajor, cMinor] = INGRESS_NGINX_CHART.version.split(".").map(Number);
            assert.deepEqual([cMajor, cMinor], [4, minor], "chart 4.N ships controller 1.N");
        });
    });
});

describe("htpasswdFile (pure)", () => {
    it("writes one newline-terminated bcrypt line per user that bcrypt verifies", () => {
        const file = htpasswdFile([["alice", "pw-alice-0123456789"], ["bob", "pw-bob-0123456789"]]);
        assert.ok(file.endsWith("\n"));
        const lines = parseHtpasswd(file);
        assert.match(lines.alice, HASH);
        assert.ok(bcrypt.compareSync("pw-alice-0123456789", lines.alice));
        assert.ok(!bcrypt.compareSync("pw-bob-0123456789", lines.alice));
        assert.ok(bcrypt.compareSync("pw-bob-0123456789", lines.bob));
    });

    it("is reproducible with salt seeds and random without", () => {
        const pairs = [["alice", "pw-alice-0123456789"]] as const;
        const seeds = { alice: "seed-a" };
        assert.equal(htpasswdFile(pairs, { saltSeeds: seeds }), htpasswdFile(pairs, { saltSeeds: seeds }));
        assert.notEqual(htpasswdFile(pairs, { saltSeeds: seeds }), htpasswdFile(pairs, { saltSeeds: { alice: "seed-b" } }));
        assert.notEqual(htpasswdFile(pairs), htpasswdFile(pairs), "random salts differ");
        // The salt depends on user and password too.
        assert.notEqual(stableSalt("s", "alice", "a"), stableSalt("s", "alice", "b"));
        assert.notEqual(stableSalt("s", "alice", "a"), stableSalt("s", "bob", "a"));
        assert.match(stableSalt("s", "alice", "a"), /^\$2y\$04\$[./A-Za-z0-9]{22}$/);
        assert.equal(bcrypt.getSalt(bcryptHash("alice", "a", "s")), stableSalt("s", "alice", "a"));
    });

    it("refuses bad user names, duplicates, empty and over-long passwords", () => {
        assert.throws(() => htpasswdFile([["a:b", "pw"]]), /htpasswd: user name "a:b" is invalid/);
        assert.throws(() => htpasswdFile([["", "pw"]]), /htpasswd: user name "" is invalid/);
        assert.throws(() => htpasswdFile([["a", "pw"], ["a", "pw2"]]), /htpasswd: duplicate user "a"/);
        assert.throws(() => htpasswdFile([["a", ""]]), /the password of "a" is empty/);
        assert.throws(() => htpasswdFile([["a", "x".repeat(73)]]), /longer than bcrypt's 72 bytes/);
        assert.doesNotThrow(() => htpasswdFile([["a", "x".repeat(72)]]));
    });
});
