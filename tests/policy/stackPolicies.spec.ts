// Stack policies of the CrossGuard pack (policy/): a small compliant stack that passes every one, and
// mutations that fail with the exact message; label selector semantics; references unknown during
// preview; and the runner that converts what the mock runtime registered (scripts/lib/policyRunner.ts).
import assert from "assert/strict";
import * as k8s from "@pulumi/kubernetes";
import { PolicyResource, StackValidationPolicy } from "@pulumi/policy";
import { LabelSelector, labelSelectorMatches, mapSelectorMatches } from "../../policy/lib/selectors";
import { stackPolicies } from "../../policy/policies";
import { ingressBackendsExist, SERVICE_MONITOR_TYPE, serviceMonitorSelectsService, serviceSelectsWorkload } from "../../policy/serviceTargets";
import { createPolicyResource, createStackValidationArgs, ResourceType, runStackPolicy, UNKNOWN_VALUE } from "../../policy/testing";
import { dedicatedServiceAccount, networkPolicyPerWorkload, podDisruptionBudgetPerWorkload } from "../../policy/workloadCoverage";
import { SECRET_SIG, SECRET_VALUE, type Registered } from "../../scripts/lib/mockRuntime";
import { formatViolation, runPolicyPack, toPolicyResources } from "../../scripts/lib/policyRunner";

const NS = "ns";
const POD = { "app.kubernetes.io/name": "app", "app.kubernetes.io/instance": "t" };
const SVC_LABELS = { "app.kubernetes.io/name": "app", "app.kubernetes.io/component": "server" };

interface Fixture {
    type: ResourceType;
    props: any;
}

/** A compliant stack: a Deployment with its ServiceAccount, PDB, NetworkPolicy, Service, Ingress and ServiceMonitor. */
function stack(): Record<string, Fixture> {
    return {
        deployment: {
            type: k8s.apps.v1.Deployment,
            props: {
                metadata: { name: "app", namespace: NS },
                spec: {
                    selector: { matchLabels: POD },
                    template: { metadata: { labels: { ...POD, tier: "web" } }, spec: { serviceAccountName: "app", containers: [{ name: "app", image: "app:1" }] } },
                },
            },
        },
        serviceAccount: { type: k8s.core.v1.ServiceAccount, props: { metadata: { name: "app", namespace: NS }, automountServiceAccountToken: false } },
        pdb: { type: k8s.policy.v1.PodDisruptionBudget, props: { metadata: { name: "app", namespace: NS }, spec: { maxUnavailable: 1, selector: { matchLabels: POD } } } },
        netpol: { type: k8s.networking.v1.NetworkPolicy, props: { metadata: { name: "default-deny", namespace: NS }, spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] } } },
        service: {
            type: k8s.core.v1.Service,
            props: { metadata: { name: "app", namespace: NS, labels: SVC_LABELS }, spec: { selector: POD, ports: [{ name: "http", port: 80, targetPort: "http" }] } },
        },
        ingress: {
            type: k8s.networking.v1.Ingress,
            props: {
                metadata: { name: "app", namespace: NS },
                spec: {
                    tls: [{ hosts: ["app.example.com"], secretName: "tls" }],
                    rules: [{ host: "app.example.com", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "app", port: { number: 80 } } } }] } }],
                },
            },
        },
        serviceMonitor: {
            type: SERVICE_MONITOR_TYPE,
            props: { metadata: { name: "app", namespace: NS }, spec: { selector: { matchLabels: { "app.kubernetes.io/name": "app" } }, endpoints: [{ port: "http", path: "/metrics" }] } },
        },
    };
}

/** Messages `policy` reports for the compliant stack after `mutate` (which may add or delete entries). */
async function messages(policy: StackValidationPolicy, mutate: (s: Record<string, Fixture>) => void = () => {}): Promise<string[]> {
    const s = stack();
    mutate(s);
    const resources: PolicyResource[] = Object.entries(s).map(([key, f]) => createPolicyResource(f.type, f.props, { name: key }));
    const result = await runStackPolicy(policy, createStackValidationArgs(resources), "mandatory");
    assert.ok(result.applicable);
    for (const v of result.violations) {
        assert.equal(v.enforcementLevel, "mandatory");
        assert.ok(v.urn && resources.some((r) => r.urn === v.urn), `violation names no resource of the stack: ${v.message}`);
    }
    return result.violations.map((v) => v.message);
}

const jobFixture = (labels: Record<string, string>, serviceAccountName = "app"): Fixture => ({
    type: k8s.batch.v1.Job,
    props: { metadata: { name: "migrate", namespace: NS }, spec: { template: { metadata: { labels }, spec: { serviceAccountName, restartPolicy: "Never", containers: [] } } } },
});

describe("label selector semantics", () => {
    const labels = { a: "1", b: "2" };
    const cases: [LabelSelector | undefined, boolean][] = [
        [undefined, false],
        [{}, true],
        [{ matchLabels: { a: "1" } }, true],
        [{ matchLabels: { a: "1", b: "3" } }, false],
        [{ matchLabels: { c: "1" } }, false],
        [{ matchExpressions: [{ key: "a", operator: "In", values: ["0", "1"] }] }, true],
        [{ matchExpressions: [{ key: "a", operator: "In", values: ["0"] }] }, false],
        [{ matchExpressions: [{ key: "c", operator: "In", values: ["1"] }] }, false],
        [{ matchExpressions: [{ key: "a", operator: "NotIn", values: ["1"] }] }, false],
        [{ matchExpressions: [{ key: "c", operator: "NotIn", values: ["1"] }] }, true],
        [{ matchExpressions: [{ key: "b", operator: "Exists" }] }, true],
        [{ matchExpressions: [{ key: "c", operator: "Exists" }] }, false],
        [{ matchExpressions: [{ key: "c", operator: "DoesNotExist" }] }, true],
        [{ matchExpressions: [{ key: "a", operator: "DoesNotExist" }] }, false],
        [{ matchExpressions: [{ key: "a", operator: "Gt", values: ["0"] }] }, false],
        [{ matchLabels: { a: "1" }, matchExpressions: [{ key: "b", operator: "In", values: ["2"] }] }, true],
        [{ matchLabels: { a: "1" }, matchExpressions: [{ key: "b", operator: "NotIn", values: ["2"] }] }, false],
    ];
    it("implements matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist) like apimachinery", () => {
        for (const [selector, expected] of cases) assert.equal(labelSelectorMatches(selector, labels), expected, JSON.stringify(selector));
        assert.equal(labelSelectorMatches({ matchLabels: { toString: "x" } }, {}), false, "inherited properties are not labels");
    });

    it("treats a Service selector as an equality map that selects nothing when empty", () => {
        assert.equal(mapSelectorMatches({ a: "1" }, labels), true);
        assert.equal(mapSelectorMatches({ a: "2" }, labels), false);
        assert.equal(mapSelectorMatches({}, labels), false);
        assert.equal(mapSelectorMatches(undefined, labels), false);
    });
});

describe("stack policies: the compliant fixture", () => {
    it("passes every stack policy", async () => {
        for (const policy of stackPolicies) assert.deepEqual(await messages(policy), [], policy.name);
    });
});

describe("policy workload-has-pod-disruption-budget", () => {
    it("passes a PDB that selects by matchExpressions", async () => {
        assert.deepEqual(await messages(podDisruptionBudgetPerWorkload, (s) => (s.pdb.props.spec.selector = { matchExpressions: [{ key: "tier", operator: "In", values: ["web", "api"] }] })), []);
    });

    it("does not require one for Jobs", async () => {
        assert.deepEqual(await messages(podDisruptionBudgetPerWorkload, (s) => (s.job = jobFixture({ job: "migrate" }))), []);
    });

    it("fails a Deployment without a PDB", async () => {
        assert.deepEqual(await messages(podDisruptionBudgetPerWorkload, (s) => delete s.pdb), ["Deployment ns/app: no PodDisruptionBudget selects its pods"]);
    });

    it("fails a PDB whose selector does not match, or that lives in another namespace", async () => {
        assert.deepEqual(await messages(podDisruptionBudgetPerWorkload, (s) => (s.pdb.props.spec.selector = { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] })), [
            "Deployment ns/app: no PodDisruptionBudget selects its pods",
        ]);
        assert.deepEqual(await messages(podDisruptionBudgetPerWorkload, (s) => (s.pdb.props.metadata.namespace = "other")), ["Deployment ns/app: no PodDisruptionBudget selects its pods"]);
    });

    it("covers StatefulSets, and skips a PDB selector unknown during preview", async () => {
        const sts = (s: Record<string, Fixture>) => (s.deployment.type = k8s.apps.v1.StatefulSet);
        assert.deepEqual(await messages(podDisruptionBudgetPerWorkload, (s) => { sts(s); delete s.pdb; }), ["StatefulSet ns/app: no PodDisruptionBudget selects its pods"]);
        assert.deepEqual(await messages(podDisruptionBudgetPerWorkload, (s) => (s.pdb.props.spec.selector = UNKNOWN_VALUE)), []);
    });
});

describe("policy workload-has-network-policy", () => {
    it("passes one policy per direction, and a policy whose egress rules imply Egress", async () => {
        assert.deepEqual(
            await messages(networkPolicyPerWorkload, (s) => {
                s.netpol.props.spec = { podSelector: { matchLabels: POD }, ingress: [{}] };
                s.egress = { type: k8s.networking.v1.NetworkPolicy, props: { metadata: { name: "egress", namespace: NS }, spec: { podSelector: { matchExpressions: [{ key: "tier", operator: "Exists" }] }, policyTypes: ["Egress"] } } };
            }),
            [],
        );
        assert.deepEqual(await messages(networkPolicyPerWorkload, (s) => (s.netpol.props.spec = { podSelector: { matchLabels: POD }, egress: [{ to: [] }] })), []);
    });

    it("fails workloads of every kind that no policy selects", async () => {
        assert.deepEqual(
            await messages(networkPolicyPerWorkload, (s) => {
                delete s.netpol;
                s.job = jobFixture({ job: "migrate" });
            }),
            ["Deployment ns/app: no NetworkPolicy selects its pods for Ingress and Egress", "Job ns/migrate: no NetworkPolicy selects its pods for Ingress and Egress"],
        );
    });

    it("fails a direction that is not isolated", async () => {
        assert.deepEqual(await messages(networkPolicyPerWorkload, (s) => (s.netpol.props.spec = { podSelector: {}, ingress: [] })), [
            "Deployment ns/app: no NetworkPolicy selects its pods for Egress",
        ]);
    });

    it("fails a policy that selects other pods or another namespace", async () => {
        assert.deepEqual(await messages(networkPolicyPerWorkload, (s) => (s.netpol.props.spec.podSelector = { matchLabels: { tier: "db" } })), [
            "Deployment ns/app: no NetworkPolicy selects its pods for Ingress and Egress",
        ]);
        assert.deepEqual(await messages(networkPolicyPerWorkload, (s) => (s.netpol.props.metadata.namespace = "other")), [
            "Deployment ns/app: no NetworkPolicy selects its pods for Ingress and Egress",
        ]);
    });

    it("skips a workload whose labels, or a policy whose selector, are unknown during preview", async () => {
        assert.deepEqual(await messages(networkPolicyPerWorkload, (s) => (s.netpol.props.spec.podSelector = UNKNOWN_VALUE)), []);
        assert.deepEqual(
            await messages(networkPolicyPerWorkload, (s) => {
                delete s.netpol;
                s.deployment.props.spec.template.metadata.labels = UNKNOWN_VALUE;
            }),
            [],
        );
    });
});

describe("policy workload-dedicated-service-account", () => {
    it("passes the deprecated serviceAccount field too", async () => {
        assert.deepEqual(
            await messages(dedicatedServiceAccount, (s) => {
                const spec = s.deployment.props.spec.template.spec;
                delete spec.serviceAccountName;
                spec.serviceAccount = "app";
            }),
            [],
        );
    });

    it("fails the default ServiceAccount, named or implied", async () => {
        assert.deepEqual(await messages(dedicatedServiceAccount, (s) => (s.deployment.props.spec.template.spec.serviceAccountName = "default")), [
            "Deployment ns/app: runs as the default ServiceAccount; set spec.serviceAccountName to a dedicated one",
        ]);
        assert.deepEqual(await messages(dedicatedServiceAccount, (s) => (s.job = jobFixture(POD, ""))), [
            "Job ns/migrate: runs as the default ServiceAccount; set spec.serviceAccountName to a dedicated one",
        ]);
    });

    it("fails a ServiceAccount that the stack does not declare in the workload's namespace", async () => {
        assert.deepEqual(await messages(dedicatedServiceAccount, (s) => (s.deployment.props.spec.template.spec.serviceAccountName = "ghost")), [
            'Deployment ns/app: ServiceAccount "ghost" is not declared in namespace ns in this stack',
        ]);
        assert.deepEqual(await messages(dedicatedServiceAccount, (s) => (s.serviceAccount.props.metadata.namespace = "other")), [
            'Deployment ns/app: ServiceAccount "app" is not declared in namespace ns in this stack',
        ]);
    });

    it("skips a ServiceAccount name unknown during preview", async () => {
        assert.deepEqual(await messages(dedicatedServiceAccount, (s) => (s.deployment.props.spec.template.spec.serviceAccountName = UNKNOWN_VALUE)), []);
        assert.deepEqual(await messages(dedicatedServiceAccount, (s) => (s.serviceAccount.props.metadata.name = UNKNOWN_VALUE)), []);
    });
});

describe("policy service-selects-workload", () => {
    it("passes a Service that selects a Job's pods, and skips Services without a selector", async () => {
        assert.deepEqual(
            await messages(serviceSelectsWorkload, (s) => {
                s.service.props.spec.selector = { job: "migrate" };
                s.job = jobFixture({ job: "migrate" });
                s.external = { type: k8s.core.v1.Service, props: { metadata: { name: "ext", namespace: NS }, spec: { type: "ExternalName", externalName: "db.example.com" } } };
                s.manual = { type: k8s.core.v1.Service, props: { metadata: { name: "manual", namespace: NS }, spec: { ports: [{ port: 5432 }] } } };
            }),
            [],
        );
    });

    it("fails a Service whose selector matches no workload's pod labels", async () => {
        assert.deepEqual(await messages(serviceSelectsWorkload, (s) => (s.service.props.spec.selector = { ...POD, tier: "db" })), [
            "Service ns/app selects no workload's pods (selector app.kubernetes.io/name=app,app.kubernetes.io/instance=t,tier=db)",
        ]);
    });

    it("fails a Service whose workload is in another namespace", async () => {
        assert.deepEqual(await messages(serviceSelectsWorkload, (s) => (s.deployment.props.metadata.namespace = "other")), [
            "Service ns/app selects no workload's pods (selector app.kubernetes.io/name=app,app.kubernetes.io/instance=t)",
        ]);
    });

    it("skips a selector unknown during preview", async () => {
        assert.deepEqual(await messages(serviceSelectsWorkload, (s) => (s.service.props.spec.selector = UNKNOWN_VALUE)), []);
    });
});

describe("policy ingress-backend-service-exists", () => {
    it("passes a default backend, and a port given by name", async () => {
        assert.deepEqual(
            await messages(ingressBackendsExist, (s) => {
                s.ingress.props.spec.defaultBackend = { service: { name: "app", port: { name: "http" } } };
                s.ingress.props.spec.rules[0].http.paths.push({ path: "/static", pathType: "Prefix", backend: { resource: { apiGroup: "x", kind: "Bucket", name: "b" } } });
            }),
            [],
        );
    });

    it("fails a backend Service that the stack does not declare", async () => {
        assert.deepEqual(await messages(ingressBackendsExist, (s) => (s.ingress.props.spec.rules[0].http.paths[0].backend.service.name = "missing")), [
            'Ingress ns/app: backend Service "missing" is not declared in namespace ns in this stack',
        ]);
        assert.deepEqual(await messages(ingressBackendsExist, (s) => (s.service.props.metadata.namespace = "other")), [
            'Ingress ns/app: backend Service "app" is not declared in namespace ns in this stack',
        ]);
    });

    it("fails a backend port the Service does not expose", async () => {
        assert.deepEqual(await messages(ingressBackendsExist, (s) => (s.ingress.props.spec.rules[0].http.paths[0].backend.service.port = { number: 5000 })), [
            'Ingress ns/app: backend Service "app" has no port 5000',
        ]);
        assert.deepEqual(await messages(ingressBackendsExist, (s) => (s.ingress.props.spec.defaultBackend = { service: { name: "app", port: { name: "https" } } })), [
            'Ingress ns/app: backend Service "app" has no port named "https"',
        ]);
    });

    it("skips a backend name unknown during preview", async () => {
        assert.deepEqual(await messages(ingressBackendsExist, (s) => (s.ingress.props.spec.rules[0].http.paths[0].backend.service.name = UNKNOWN_VALUE)), []);
    });
});

describe("policy servicemonitor-selects-service", () => {
    it("passes matchExpressions, and a Service in another namespace admitted by namespaceSelector", async () => {
        assert.deepEqual(
            await messages(serviceMonitorSelectsService, (s) => {
                s.serviceMonitor.props.spec.selector = { matchExpressions: [{ key: "app.kubernetes.io/component", operator: "In", values: ["server"] }] };
            }),
            [],
        );
        assert.deepEqual(
            await messages(serviceMonitorSelectsService, (s) => {
                s.serviceMonitor.props.metadata.namespace = "monitoring";
                s.serviceMonitor.props.spec.namespaceSelector = { matchNames: [NS] };
            }),
            [],
        );
        assert.deepEqual(
            await messages(serviceMonitorSelectsService, (s) => {
                s.serviceMonitor.props.metadata.namespace = "monitoring";
                s.serviceMonitor.props.spec.namespaceSelector = { any: true };
            }),
            [],
        );
    });

    it("fails a selector that matches no Service's labels", async () => {
        assert.deepEqual(await messages(serviceMonitorSelectsService, (s) => (s.serviceMonitor.props.spec.selector = { matchLabels: { "app.kubernetes.io/name": "other" } })), [
            "ServiceMonitor ns/app selects no Service in the stack (selector app.kubernetes.io/name=other)",
        ]);
    });

    it("fails when the Service is outside the namespaces it watches", async () => {
        assert.deepEqual(await messages(serviceMonitorSelectsService, (s) => (s.serviceMonitor.props.metadata.namespace = "monitoring")), [
            "ServiceMonitor monitoring/app selects no Service in the stack (selector app.kubernetes.io/name=app)",
        ]);
    });

    it("fails an endpoint port that no selected Service names", async () => {
        assert.deepEqual(await messages(serviceMonitorSelectsService, (s) => (s.serviceMonitor.props.spec.endpoints = [{ port: "metrics" }])), [
            'ServiceMonitor ns/app: endpoint port "metrics" is not a port name of any Service it selects',
        ]);
    });

    it("skips a selector unknown during preview", async () => {
        assert.deepEqual(await messages(serviceMonitorSelectsService, (s) => (s.serviceMonitor.props.spec.selector = UNKNOWN_VALUE)), []);
    });
});

describe("policy runner (scripts/lib/policyRunner.ts)", () => {
    const reg = (type: string, name: string, inputs: any, dependencies: string[] = []): Registered => ({ type, name, inputs, custom: true, dependencies, options: {} });
    const hardenedPod = {
        serviceAccountName: "app",
        securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
        containers: [
            {
                name: "app",
                image: "app:latest",
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
                resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "1", memory: "1Gi" } },
            },
        ],
    };
    const registered: Registered[] = [
        { type: "mlflow-platform:tracking:TrackingServer", name: "t", inputs: {}, custom: false, dependencies: [], options: {} },
        reg("kubernetes:core/v1:ServiceAccount", "sa", { metadata: { name: "app", namespace: NS } }),
        reg("kubernetes:core/v1:ServiceAccount", "sa", { metadata: { name: "other", namespace: NS } }),
        reg("kubernetes:core/v1:Secret", "creds", { metadata: { namespace: NS }, stringData: { [SECRET_SIG]: SECRET_VALUE, value: { password: "p" } } }),
        reg("kubernetes:networking.k8s.io/v1:NetworkPolicy", "deny", { metadata: { namespace: NS }, spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"] } }),
        reg("kubernetes:batch/v1:Job", "migrate", { metadata: { namespace: NS }, spec: { template: { metadata: { labels: POD }, spec: hardenedPod } } }, [
            "urn:pulumi:dev::mlflow-platform::mlflow-platform:tracking:TrackingServer$kubernetes:core/v1:Secret::creds",
        ]),
    ];

    it("converts registered resources the way the policy runtime sees them", () => {
        const resources = toPolicyResources(registered, "dev");
        assert.deepEqual(
            resources.map((r) => r.urn),
            [
                "urn:pulumi:dev::mlflow-platform::mlflow-platform:tracking:TrackingServer::t",
                "urn:pulumi:dev::mlflow-platform::kubernetes:core/v1:ServiceAccount::sa",
                "urn:pulumi:dev::mlflow-platform::kubernetes:core/v1:ServiceAccount::sa#2",
                "urn:pulumi:dev::mlflow-platform::kubernetes:core/v1:Secret::creds",
                "urn:pulumi:dev::mlflow-platform::kubernetes:networking.k8s.io/v1:NetworkPolicy::deny",
                "urn:pulumi:dev::mlflow-platform::kubernetes:batch/v1:Job::migrate",
            ],
        );
        const secret = resources[3];
        assert.deepEqual(JSON.parse(JSON.stringify(secret.props)), { metadata: { name: "creds", namespace: NS }, stringData: { password: "p" } });
        assert.equal(resources[5].props.metadata.name, "migrate", "autonamed objects take the resource name");
        assert.ok(resources[5].isType(k8s.batch.v1.Job));
        assert.deepEqual(resources[5].dependencies.map((d) => d.urn), [secret.urn]);
    });

    it("applies the whole pack and reports each violation with the resource", async () => {
        const violations = await runPolicyPack(registered, { stack: "dev" });
        assert.deepEqual(violations.map(formatViolation), [
            '[mandatory] workload-image-pinned (kubernetes:batch/v1:Job::migrate): container "app": image "app:latest" uses the floating tag latest; pin a version tag or a digest',
        ]);
    });
});
