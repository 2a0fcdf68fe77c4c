// The pack as the Pulumi CLI runs it: policy/index.ts starts @pulumi/policy's own gRPC analyzer server
// (cwd policy/, as the CLI does), and this spec talks to it over the analyzer protocol the engine uses:
// GetAnalyzerInfo, Analyze (one resource's inputs) and AnalyzeStack (the whole dev stack). It checks
// that the served pack is the one the unit specs test, and that the real server reports exactly what
// scripts/lib/policyRunner.ts reports for the same resources. Runs in its own mocha process (it runs
// the program, which registers resources on import).
import assert from "assert/strict";
import { ChildProcess, spawn } from "child_process";
import * as path from "path";
import * as grpc from "@grpc/grpc-js";
import { policies } from "../../../policy/policies";
import { UNKNOWN_VALUE } from "../../../policy/testing";
import { evaluatePolicyPack, stackPolicyConfig, formatViolation, toPolicyResources } from "../../../scripts/lib/policyRunner";
import { ROOT, runProgram } from "../../../scripts/lib/program";

/* eslint-disable @typescript-eslint/no-var-requires */
const analyzerRpc = require("@pulumi/pulumi/proto/analyzer_grpc_pb");
const analyzerProto = require("@pulumi/pulumi/proto/analyzer_pb");
const emptyProto = require("google-protobuf/google/protobuf/empty_pb");
const structProto = require("google-protobuf/google/protobuf/struct_pb");
/* eslint-enable @typescript-eslint/no-var-requires */

const call = <T>(client: any, method: string, req: unknown): Promise<T> =>
    new Promise((resolve, reject) => client[method](req, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));

function resourceMessage(Message: any, r: { type: string; name: string; urn: string; props: unknown }): any {
    const m = new Message();
    m.setType(r.type);
    m.setName(r.name);
    m.setUrn(r.urn);
    m.setProperties(structProto.Struct.fromJavaScript(JSON.parse(JSON.stringify(r.props))));
    m.setOptions(new analyzerProto.AnalyzerResourceOptions());
    return m;
}

interface Diagnostic {
    policyName: string;
    /** What the policy reported; the server sends `<description>\n<message>`. */
    message: string;
    urn: string;
    enforcementLevel: number;
}

const descriptions = new Map(policies.map((p) => [p.name, p.description]));

/** The diagnostics of a response, with the description prefix checked and removed; `urn` for Analyze, which leaves it to the engine. */
function diagnostics(res: any, urn = ""): Diagnostic[] {
    return res.getDiagnosticsList().map((d: any) => {
        const prefix = `${descriptions.get(d.getPolicyname())}\n`;
        assert.ok(d.getMessage().startsWith(prefix), d.getMessage());
        return { policyName: d.getPolicyname(), message: d.getMessage().slice(prefix.length), urn: d.getUrn() || urn, enforcementLevel: d.getEnforcementlevel() };
    });
}

describe("policy pack served by @pulumi/policy (the CLI's path)", function () {
    this.timeout(120000);
    let server: ChildProcess;
    let client: any;

    before(async () => {
        const dir = path.join(ROOT, "policy");
        server = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "index.ts"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
        let stderr = "";
        server.stderr!.on("data", (d) => (stderr += d));
        const port = await new Promise<string>((resolve, reject) => {
            server.stdout!.once("data", (d) => resolve(String(d).trim()));
            server.once("exit", (code) => reject(new Error(`policy pack exited with ${code}: ${stderr}`)));
        });
        assert.match(port, /^\d+$/);
        client = new analyzerRpc.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    });

    after(() => {
        client?.close();
        if (server && server.exitCode === null) server.kill();
    });

    it("serves the pack mlflow-platform with every policy, mandatory", async () => {
        const info: any = await call(client, "getAnalyzerInfo", new emptyProto.Empty());
        assert.equal(info.getName(), "mlflow-platform");
        const served = info.getPoliciesList().map((p: any) => [p.getName(), p.getEnforcementlevel()]);
        const MANDATORY = analyzerProto.EnforcementLevel.MANDATORY;
        assert.deepEqual(served, policies.map((p) => [p.name, MANDATORY]));
    });

    it("analyzes one resource's inputs like the unit specs, skipping what is unknown during preview", async () => {
        const props = {
            metadata: { name: "app", namespace: "ns" },
            spec: {
                securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
                initContainers: [
                    {
                        name: "init",
                        image: UNKNOWN_VALUE, // unknown during preview: this container is skipped, not reported
                        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
                        resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "1", memory: "1Gi" } },
                    },
                ],
                containers: [
                    {
                        name: "app",
                        image: "app:latest",
                        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
                        resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "1", memory: "1Gi" } },
                    },
                ],
            },
        };
        const req = resourceMessage(analyzerProto.AnalyzeRequest, { type: "kubernetes:core/v1:Pod", name: "app", urn: "urn:pulumi:t::p::kubernetes:core/v1:Pod::app", props });
        const res = await call(client, "analyze", req);
        assert.deepEqual(
            diagnostics(res).map((d) => `${d.policyName}: ${d.message}`),
            ['workload-image-pinned: container "app": image "app:latest" uses the floating tag latest; pin a version tag or a digest'],
        );
    });

    it("reports for the dev stack, plus known-bad resources, exactly what the runner reports", async () => {
        const run = await runProgram("dev");
        // Known-bad additions, so that both sides must report something: a Service that selects no pods,
        // and a Pod running a floating `:latest` image.
        const bad = [
            {
                type: "kubernetes:core/v1:Service",
                name: "orphan-svc",
                inputs: { metadata: { name: "orphan-svc", namespace: "bad" }, spec: { selector: { app: "nothing-has-this" }, ports: [{ port: 80 }] } },
                custom: true,
                dependencies: [],
                options: {},
            },
            {
                type: "kubernetes:core/v1:Pod",
                name: "latest-pod",
                inputs: {
                    metadata: { name: "latest-pod", namespace: "bad", labels: { app: "latest-pod" } },
                    spec: { containers: [{ name: "app", image: "app:latest" }] },
                },
                custom: true,
                dependencies: [],
                options: {},
            },
        ];
        const all = [...run.resources, ...bad];
        const resources = toPolicyResources(all, "dev");
        const expected = (await evaluatePolicyPack(all, { stack: "dev" })).violations;
        const expectedPolicies = new Set(expected.map((v) => v.policyName));
        assert.ok(expected.length > 0, "the known-bad resources must be reported");
        for (const name of ["service-selects-workload", "workload-image-pinned"]) assert.ok(expectedPolicies.has(name), `runner did not report ${name}`);
        // As `--policy-pack-config policy/config/dev.json` does: the engine sends it with Configure.
        const configure = new analyzerProto.ConfigureAnalyzerRequest();
        for (const [policy, properties] of Object.entries(stackPolicyConfig("dev"))) {
            const pc = new analyzerProto.PolicyConfig();
            pc.setEnforcementlevel(analyzerProto.EnforcementLevel.MANDATORY);
            pc.setProperties(structProto.Struct.fromJavaScript(properties));
            configure.getPolicyconfigMap().set(policy, pc);
        }
        await call(client, "configure", configure);

        const found: Diagnostic[] = [];
        for (const r of resources) {
            found.push(...diagnostics(await call(client, "analyze", resourceMessage(analyzerProto.AnalyzeRequest, r)), r.urn));
        }
        const stackReq = new analyzerProto.AnalyzeStackRequest();
        stackReq.setResourcesList(resources.map((r) => resourceMessage(analyzerProto.AnalyzerResource, r)));
        found.push(...diagnostics(await call(client, "analyzeStack", stackReq)));

        for (const d of found) assert.equal(d.enforcementLevel, analyzerProto.EnforcementLevel.MANDATORY);
        const key = (policyName: string, urn: string | undefined, message: string) => `${policyName} ${urn ?? ""} ${message}`;
        assert.deepEqual(
            found.map((d) => key(d.policyName, d.urn, d.message)).sort(),
            expected.map((v) => key(v.policyName, v.urn, v.message)).sort(),
            `runner found: ${expected.map(formatViolation).join("; ")}`,
        );
    });
});
