// Resource policies of the CrossGuard pack (policy/): for each, a hardened fixture that passes on every
// workload kind and mutated fixtures that fail with the exact message. No engine or CLI: the args are
// built the way the policy runtime builds them (policy/testing.ts).
import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { ResourceValidationPolicy } from "@pulumi/policy";
import { resourceRequestsAndLimits } from "../../policy/containerResources";
import { emptyDirWithinEphemeralStorage } from "../../policy/ephemeralStorage";
import { imageProblem, pinnedImages } from "../../policy/imageTags";
import { ingressTls, tlsHostCovers } from "../../policy/ingressTls";
import { PACK_NAME, policies, resourcePolicies } from "../../policy/policies";
import { dropAllCapabilities, noPrivilegeEscalation, runAsNonRoot, seccompRuntimeDefault } from "../../policy/podSecurity";
import { isSensitiveEnvName, noPlaintextSecretEnv } from "../../policy/secretEnv";
import { createResourceValidationArgs, ResourceType, runResourcePolicy, UNKNOWN_VALUE } from "../../policy/testing";

const LABELS = { "app.kubernetes.io/name": "app", "app.kubernetes.io/instance": "t" };

/** A container that meets every resource policy. */
function container(name: string): any {
    return {
        name,
        image: "registry.example.com/team/app:1.2.3",
        securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
        resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "500m", memory: "256Mi" } },
        env: [{ name: "LOG_LEVEL", value: "info" }],
    };
}

/** A pod spec that meets every resource policy: restricted pod securityContext, one init container. */
function podSpec(): any {
    return {
        serviceAccountName: "app",
        securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
        initContainers: [container("init")],
        containers: [container("app")],
    };
}

const meta = { name: "app", namespace: "ns", labels: LABELS };
const template = (spec: any) => ({ metadata: { labels: LABELS }, spec });

/** The same pod spec inside each workload kind the pack covers. */
const KINDS: Record<string, { cls: ResourceType; wrap: (spec: any) => any }> = {
    Deployment: { cls: k8s.apps.v1.Deployment, wrap: (s) => ({ metadata: meta, spec: { selector: { matchLabels: LABELS }, template: template(s) } }) },
    StatefulSet: { cls: k8s.apps.v1.StatefulSet, wrap: (s) => ({ metadata: meta, spec: { serviceName: "app", selector: { matchLabels: LABELS }, template: template(s) } }) },
    DaemonSet: { cls: k8s.apps.v1.DaemonSet, wrap: (s) => ({ metadata: meta, spec: { selector: { matchLabels: LABELS }, template: template(s) } }) },
    Job: { cls: k8s.batch.v1.Job, wrap: (s) => ({ metadata: meta, spec: { template: template({ restartPolicy: "OnFailure", ...s }) } }) },
    CronJob: {
        cls: k8s.batch.v1.CronJob,
        wrap: (s) => ({ metadata: meta, spec: { schedule: "0 3 * * *", jobTemplate: { spec: { template: template({ restartPolicy: "OnFailure", ...s }) } } } }),
    },
    Pod: { cls: k8s.core.v1.Pod, wrap: (s) => ({ metadata: meta, spec: s }) },
};

/** Messages `policy` reports for a `kind` whose pod spec is the hardened one after `mutate`. */
async function messages(policy: ResourceValidationPolicy, mutate: (spec: any) => void = () => {}, kind = "Deployment"): Promise<string[]> {
    const spec = podSpec();
    mutate(spec);
    const { cls, wrap } = KINDS[kind];
    const result = await runResourcePolicy(policy, createResourceValidationArgs(cls, wrap(spec)), "mandatory");
    assert.ok(result.applicable, `${policy.name} should apply to ${kind}`);
    for (const v of result.violations) assert.equal(v.enforcementLevel, "mandatory");
    return result.violations.map((v) => v.message);
}

const podPolicies = resourcePolicies.filter((p) => p !== ingressTls);

describe("policy pack: metadata", () => {
    it("has stable, unique names, mandatory enforcement and upstream rule ids in every description", () => {
        assert.equal(PACK_NAME, "mlflow-platform");
        assert.deepEqual(
            policies.map((p) => p.name),
            [
                "workload-run-as-non-root",
                "workload-no-privilege-escalation",
                "workload-drop-all-capabilities",
                "workload-seccomp-runtime-default",
                "workload-resource-requests-limits",
                "workload-emptydir-within-ephemeral-storage",
                "workload-image-pinned",
                "workload-no-plaintext-secret-env",
                "ingress-tls-required",
                "workload-has-pod-disruption-budget",
                "workload-has-network-policy",
                "workload-dedicated-service-account",
                "service-selects-workload",
                "ingress-backend-service-exists",
                "servicemonitor-selects-service",
            ],
        );
        for (const p of policies) {
            assert.equal(p.enforcementLevel, "mandatory", p.name);
            assert.match(p.description, /\b(?:KS|KL|PO):[A-Za-z-]+|\bCKV2?_K8S_\d+/, `${p.name} names no upstream rule id`);
        }
        assert.match(runAsNonRoot.description, /KS:container-security-context-user-group-id.*KL:run-as-non-root.*CKV_K8S_23/);
    });

    it("is not applicable to other resource types", async () => {
        for (const policy of resourcePolicies) {
            const result = await runResourcePolicy(policy, createResourceValidationArgs(k8s.core.v1.Service, { metadata: meta, spec: { selector: LABELS } }));
            assert.deepEqual(result, { violations: [], applicable: false }, policy.name);
        }
    });

    it("passes the hardened pod spec in every workload kind", async () => {
        for (const kind of Object.keys(KINDS)) {
            for (const policy of podPolicies) assert.deepEqual(await messages(policy, undefined, kind), [], `${policy.name} on ${kind}`);
        }
    });

    it("finds a violation in every workload kind (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod)", async () => {
        for (const kind of Object.keys(KINDS)) {
            assert.deepEqual(
                await messages(runAsNonRoot, (s) => { delete s.securityContext.runAsNonRoot; delete s.containers[0].securityContext.runAsNonRoot; }, kind),
                ['container "app" may run as root: set securityContext.runAsNonRoot: true on the pod or the container'],
                kind,
            );
        }
    });
});

describe("policy workload-run-as-non-root", () => {
    it("passes with runAsNonRoot on the pod only", async () => {
        assert.deepEqual(
            await messages(runAsNonRoot, (s) => [...s.initContainers, ...s.containers].forEach((c: any) => delete c.securityContext.runAsNonRoot)),
            [],
        );
    });

    it("passes with runAsNonRoot on every container only", async () => {
        assert.deepEqual(await messages(runAsNonRoot, (s) => delete s.securityContext.runAsNonRoot), []);
    });

    it("fails an init container that is not covered", async () => {
        assert.deepEqual(await messages(runAsNonRoot, (s) => { delete s.securityContext.runAsNonRoot; delete s.initContainers[0].securityContext.runAsNonRoot; }), [
            'init container "init" may run as root: set securityContext.runAsNonRoot: true on the pod or the container',
        ]);
    });

    it("fails a container that overrides the pod with runAsNonRoot: false", async () => {
        assert.deepEqual(await messages(runAsNonRoot, (s) => (s.containers[0].securityContext.runAsNonRoot = false)), [
            'container "app" may run as root: set securityContext.runAsNonRoot: true on the pod or the container',
        ]);
    });

    it("fails UID 0", async () => {
        assert.deepEqual(await messages(runAsNonRoot, (s) => (s.containers[0].securityContext.runAsUser = 0)), [
            'container "app" runs as UID 0: runAsUser must be a non-zero UID',
        ]);
    });
});

describe("policy workload-no-privilege-escalation", () => {
    it("passes allowPrivilegeEscalation: false on every container", async () => {
        assert.deepEqual(await messages(noPrivilegeEscalation), []);
    });

    it("fails unset or true", async () => {
        assert.deepEqual(
            await messages(noPrivilegeEscalation, (s) => {
                delete s.initContainers[0].securityContext.allowPrivilegeEscalation;
                s.containers[0].securityContext.allowPrivilegeEscalation = true;
            }),
            [
                'init container "init": securityContext.allowPrivilegeEscalation must be false',
                'container "app": securityContext.allowPrivilegeEscalation must be false',
            ],
        );
    });

    it("fails a container without any securityContext", async () => {
        assert.deepEqual(await messages(noPrivilegeEscalation, (s) => delete s.containers[0].securityContext), [
            'container "app": securityContext.allowPrivilegeEscalation must be false',
        ]);
    });
});

describe("policy workload-drop-all-capabilities", () => {
    it("passes drop ALL, and adding NET_BIND_SERVICE back", async () => {
        assert.deepEqual(await messages(dropAllCapabilities, (s) => (s.containers[0].securityContext.capabilities.add = ["NET_BIND_SERVICE"])), []);
    });

    it("fails a drop list without ALL", async () => {
        assert.deepEqual(await messages(dropAllCapabilities, (s) => (s.containers[0].securityContext.capabilities.drop = ["NET_RAW"])), [
            'container "app": securityContext.capabilities.drop must include ALL',
        ]);
    });

    it("fails added capabilities other than NET_BIND_SERVICE", async () => {
        assert.deepEqual(await messages(dropAllCapabilities, (s) => (s.initContainers[0].securityContext.capabilities.add = ["SYS_ADMIN", "NET_BIND_SERVICE", "NET_RAW"])), [
            'init container "init": adds capabilities SYS_ADMIN, NET_RAW; only NET_BIND_SERVICE may be added',
        ]);
    });
});

describe("policy workload-seccomp-runtime-default", () => {
    it("passes RuntimeDefault on the pod, or Localhost on a container", async () => {
        assert.deepEqual(await messages(seccompRuntimeDefault, (s) => (s.containers[0].securityContext.seccompProfile = { type: "Localhost", localhostProfile: "p.json" })), []);
    });

    it("fails when no profile is set", async () => {
        assert.deepEqual(await messages(seccompRuntimeDefault, (s) => delete s.securityContext.seccompProfile), [
            'init container "init": seccompProfile.type must be RuntimeDefault (set it in the pod securityContext), got none',
            'container "app": seccompProfile.type must be RuntimeDefault (set it in the pod securityContext), got none',
        ]);
    });

    it("fails a container that overrides the pod with Unconfined", async () => {
        assert.deepEqual(await messages(seccompRuntimeDefault, (s) => (s.containers[0].securityContext.seccompProfile = { type: "Unconfined" })), [
            'container "app": seccompProfile.type must be RuntimeDefault (set it in the pod securityContext), got Unconfined',
        ]);
    });
});

describe("policy workload-resource-requests-limits", () => {
    it("passes cpu and memory requests and limits", async () => {
        assert.deepEqual(await messages(resourceRequestsAndLimits), []);
    });

    it("fails and lists each missing value", async () => {
        assert.deepEqual(
            await messages(resourceRequestsAndLimits, (s) => {
                delete s.containers[0].resources.limits.cpu;
                delete s.containers[0].resources.requests.memory;
                delete s.initContainers[0].resources;
            }),
            [
                'init container "init" has no resources.requests.cpu, resources.requests.memory, resources.limits.cpu, resources.limits.memory',
                'container "app" has no resources.requests.memory, resources.limits.cpu',
            ],
        );
    });

    it("does not accept limits alone (the defaulted request is implicit)", async () => {
        assert.deepEqual(await messages(resourceRequestsAndLimits, (s) => delete s.containers[0].resources.requests), [
            'container "app" has no resources.requests.cpu, resources.requests.memory',
        ]);
    });
});

describe("policy workload-emptydir-within-ephemeral-storage", () => {
    const disk = (spec: any, limits: Record<string, string | undefined>, volumes: any[]) => {
        for (const c of [...spec.initContainers, ...spec.containers]) {
            const l = limits[c.name];
            if (l !== undefined) c.resources.limits["ephemeral-storage"] = l;
        }
        spec.volumes = volumes;
    };
    const emptyDir = (name: string, sizeLimit?: string, medium?: string) => ({ name, emptyDir: { ...(sizeLimit ? { sizeLimit } : {}), ...(medium ? { medium } : {}) } });

    it("passes emptyDirs that fit the containers' limits summed, in every workload kind", async () => {
        for (const kind of Object.keys(KINDS)) {
            const fits = (s: any) => disk(s, { app: "256Mi", init: "64Mi" }, [emptyDir("tmp", "200Mi"), emptyDir("cache", "56Mi"), { name: "conf", configMap: { name: "c" } }]);
            assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, fits, kind), [], kind);
        }
    });

    it("counts a larger init container's limit as the pod's, and memory-backed emptyDirs not at all", async () => {
        assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, (s) => disk(s, { app: "64Mi", init: "1Gi" }, [emptyDir("tools", "1Gi")])), []);
        assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, (s) => disk(s, { app: "64Mi" }, [emptyDir("shm", "4Gi", "Memory")])), []);
    });

    it("fails sizeLimits that add up to more than the pod's limit, naming both sums (the old backup pod's spool)", async () => {
        const spool = (s: any) => {
            s.containers.push({ ...container("upload") });
            disk(s, { init: "256Mi", app: "256Mi", upload: "256Mi" }, [emptyDir("dump", "10Gi"), emptyDir("tmp", "64Mi")]);
        };
        assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, spool, "CronJob"), [
            'emptyDir sizeLimits add up to 10304Mi ("dump" 10Gi + "tmp" 64Mi), above the pod\'s ephemeral-storage limit 512Mi (containers "app" 256Mi + "upload" 256Mi): ' +
                "the kubelet evicts the pod before its volumes fill; lower the sizeLimits or raise the limits",
        ]);
    });

    it("fails an emptyDir without sizeLimit, and emptyDirs in a pod with no ephemeral-storage limit", async () => {
        assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, (s) => disk(s, { app: "1Gi" }, [emptyDir("tmp")])), [
            'emptyDir "tmp" has no sizeLimit: it may grow until the node\'s disk is full; set one within the pod\'s ephemeral-storage limit',
        ]);
        assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, (s) => disk(s, {}, [emptyDir("tmp", "64Mi")])), [
            'has emptyDir volumes ("tmp") but no container sets resources.limits.ephemeral-storage: nothing bounds the pod\'s disk use',
        ]);
    });

    it("skips a pod whose size is unknown during preview, and reports a malformed one", async () => {
        assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, (s) => disk(s, { app: "64Mi" }, [emptyDir("tmp", UNKNOWN_VALUE)])), []);
        assert.deepEqual(await messages(emptyDirWithinEphemeralStorage, (s) => disk(s, { app: "64Mi" }, [emptyDir("tmp", "lots")])), [
            "cannot compare its emptyDir sizes with its ephemeral-storage limit: not a Kubernetes quantity: lots",
        ]);
    });
});

describe("policy workload-image-pinned", () => {
    it("passes version tags, digests and registries with ports", async () => {
        for (const image of ["postgres:17.6-bookworm", "ghcr.io/mlflow/mlflow:v3.17.2-full", "localhost:5000/app:1.0", `app@sha256:${"a".repeat(64)}`, `app:latest@sha256:${"b".repeat(64)}`]) {
            assert.equal(imageProblem(image), undefined, image);
        }
        assert.deepEqual(await messages(pinnedImages), []);
    });

    it("fails latest and untagged images", async () => {
        assert.deepEqual(
            await messages(pinnedImages, (s) => {
                s.initContainers[0].image = "busybox";
                s.containers[0].image = "localhost:5000/team/app:latest";
            }),
            [
                'init container "init": image "busybox" has no tag; pin a version tag or a digest',
                'container "app": image "localhost:5000/team/app:latest" uses the floating tag latest; pin a version tag or a digest',
            ],
        );
    });

    it("fails a missing image and a malformed digest", async () => {
        assert.deepEqual(
            await messages(pinnedImages, (s) => {
                delete s.initContainers[0].image;
                s.containers[0].image = "app@sha256:abc";
            }),
            ['init container "init" has no image', 'container "app": image "app@sha256:abc" has a malformed digest; pin a version tag or a digest'],
        );
    });

    it("skips only the container whose image is unknown during preview", async () => {
        assert.deepEqual(
            await messages(pinnedImages, (s) => {
                s.initContainers[0].image = UNKNOWN_VALUE;
                s.containers[0].image = "app:latest";
            }),
            ['container "app": image "app:latest" uses the floating tag latest; pin a version tag or a digest'],
        );
    });
});

describe("policy workload-no-plaintext-secret-env", () => {
    it("recognizes credential names by segment, and file pointers", () => {
        for (const n of ["DB_PASSWORD", "POSTGRES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "API_KEY", "apiKey", "dbPassword", "MLFLOW_FLASK_SERVER_SECRET_KEY", "GOOGLE_APPLICATION_CREDENTIALS_JSON", "BEARER"]) {
            assert.ok(isSensitiveEnvName(n), n);
        }
        for (const n of ["POSTGRES_PASSWORD_FILE", "MINIO_CONFIG_ENV_FILE", "TOKENIZERS_PARALLELISM", "PGHOST", "PWD", "HOME", "MONKEY_MODE", "KEYCLOAK_URL", "AWS_SHARED_CREDENTIALS_FILE"]) {
            assert.ok(!isSensitiveEnvName(n), n);
        }
    });

    it("passes secretKeyRef, *_FILE pointers and ordinary literals", async () => {
        assert.deepEqual(
            await messages(noPlaintextSecretEnv, (s) =>
                s.containers[0].env.push(
                    { name: "DB_PASSWORD", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
                    { name: "POSTGRES_PASSWORD_FILE", value: "/run/secrets/postgres/password" },
                    { name: "API_TOKEN", value: "" },
                    { name: "MLFLOW_S3_ENDPOINT_URL", value: "http://minio.ns.svc:9000" },
                ),
            ),
            [],
        );
    });

    it("fails a literal credential, in init containers too", async () => {
        assert.deepEqual(
            await messages(noPlaintextSecretEnv, (s) => {
                s.initContainers[0].env.push({ name: "AWS_SECRET_ACCESS_KEY", value: "wJalrXUtnFEMI" });
                s.containers[0].env.push({ name: "dbPassword", value: "hunter2" });
            }),
            [
                'init container "init": env AWS_SECRET_ACCESS_KEY holds a literal value; reference a Secret (mounted file or valueFrom.secretKeyRef) instead',
                'container "app": env dbPassword holds a literal value; reference a Secret (mounted file or valueFrom.secretKeyRef) instead',
            ],
        );
    });

    it("fails a URL with an embedded password under any name", async () => {
        assert.deepEqual(await messages(noPlaintextSecretEnv, (s) => s.containers[0].env.push({ name: "MLFLOW_BACKEND_STORE_URI", value: "postgresql://mlflow:s3cr3t@db:5432/mlflow" })), [
            'container "app": env MLFLOW_BACKEND_STORE_URI holds a URL with an embedded password; reference a Secret instead',
        ]);
    });
});

describe("policy ingress-tls-required", () => {
    const ingress = (spec: any) => createResourceValidationArgs(k8s.networking.v1.Ingress, { metadata: { name: "web", namespace: "ns" }, spec });
    const rules = [{ host: "mlflow.example.com", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "app", port: { number: 80 } } } }] } }];
    const run = async (spec: any) => (await runResourcePolicy(ingressTls, ingress(spec), "mandatory")).violations.map((v) => v.message);

    it("passes when every host is covered by spec.tls (listed, wildcard, or an entry without hosts)", async () => {
        assert.deepEqual(await run({ tls: [{ hosts: ["mlflow.example.com"], secretName: "tls" }], rules }), []);
        assert.deepEqual(await run({ tls: [{ hosts: ["*.example.com"], secretName: "tls" }], rules }), []);
        assert.deepEqual(await run({ tls: [{ secretName: "tls" }], rules }), []);
        assert.ok(!tlsHostCovers("*.example.com", "a.b.example.com"));
        assert.ok(!tlsHostCovers("*.example.com", "example.com"));
    });

    it("fails an Ingress without spec.tls", async () => {
        assert.deepEqual(await run({ rules }), ["Ingress has no spec.tls: every Ingress must terminate TLS"]);
        assert.deepEqual(await run({ tls: [], rules }), ["Ingress has no spec.tls: every Ingress must terminate TLS"]);
    });

    it("fails a host that no tls entry covers", async () => {
        assert.deepEqual(await run({ tls: [{ hosts: ["other.example.org"], secretName: "tls" }], rules }), [
            'Ingress host "mlflow.example.com" is not listed in any spec.tls[].hosts, so it is served without TLS',
        ]);
    });

    it("skips an Ingress whose tls is unknown during preview", async () => {
        assert.deepEqual(await run({ tls: UNKNOWN_VALUE, rules }), []);
    });

    it("exempts only the hosts the stack's policy config lists as plaintext", async () => {
        const withConfig = async (plaintextHosts: string[]) =>
            (await runResourcePolicy(ingressTls, createResourceValidationArgs(k8s.networking.v1.Ingress, { metadata: { name: "web", namespace: "ns" }, spec: { rules } }, { config: { plaintextHosts } }), "mandatory")).violations.map((v) => v.message);
        assert.deepEqual(await withConfig(["mlflow.example.com"]), []);
        assert.deepEqual(await withConfig(["other.example.com"]), ["Ingress has no spec.tls: every Ingress must terminate TLS"]);
    });
});
