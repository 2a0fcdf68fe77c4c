// Applies rendered objects to a real API server the way `pulumi up` would: server-side apply, one
// object at a time in the program's dependency order (./applyOrder.ts), with the Pulumi
// provider's field manager, and strict field validation. The pinned CRDs (all of them) come first. A refusal stops the apply, naming the object and quoting the server.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parseAllDocuments } from "yaml";
import { describeObject, fieldManagerFor, forceFor, OrderedObject } from "./applyOrder";
import { KubeObject } from "../lib/manifests";
import { parsePrintEnv } from "../lib/printEnv";
import { KubeClient, KubeError } from "./kubeClient";
import { readinessCycles, waitUntilReady } from "./readiness";
import { sleep } from "../local/supervisor";

const ROOT = path.resolve(__dirname, "..", "..");

/** The field manager for CRDs: they are a prerequisite installed beside the program, not by it. */
export const CRD_FIELD_MANAGER = "mlflow-platform-crds";

/**
 * The CRD files: KServe's pinned copies in crds/, and prometheus-operator's from its pinned Go module
 * (fetched by scripts/tools/install-checkers.sh, the same pin the checkers validate with).
 */
export function crdFiles(): string[] {
    const kserve = path.join(ROOT, "crds", "kserve");
    const files = fs.readdirSync(kserve).filter((f) => f.endsWith(".yaml")).sort().map((f) => path.join(kserve, f));
    const installer = path.join(ROOT, "scripts", "tools", "install-checkers.sh");
    const r = spawnSync("bash", [installer, "--print-env", "prometheus-crds"], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    const dir = parsePrintEnv(r.stdout ?? "").PROMETHEUS_CRDS;
    if (r.status !== 0 || !dir || !fs.existsSync(dir)) throw new Error(`no prometheus-operator CRDs: ${path.relative(ROOT, installer)} prometheus-crds exited ${r.status} (reasons above)`);
    return [...files, ...fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort().map((f) => path.join(dir, f))];
}

export class ApplyError extends Error {
    constructor(
        readonly object: string,
        readonly status: number,
        readonly serverMessage: string,
    ) {
        super(`${object} was refused by the API server (HTTP ${status}): ${serverMessage}`);
    }
}

/**
 * Applies (for real) every CustomResourceDefinition in `files`, then waits until each is Established.
 * All of them, not only the kinds a stack renders: the deploy controller creates InferenceServices the
 * stack does not declare.
 */
export async function installCrds(client: KubeClient, files: string[]): Promise<string[]> {
    const crds: KubeObject[] = [];
    for (const f of files) {
        for (const doc of parseAllDocuments(fs.readFileSync(f, "utf8"))) {
            const o = doc.toJS() as KubeObject | null;
            if (o?.kind !== "CustomResourceDefinition") continue;
            crds.push(o);
        }
    }
    for (const crd of crds) {
        try {
            await client.apply(crd, { fieldManager: CRD_FIELD_MANAGER, force: true });
        } catch (e) {
            throw e instanceof KubeError ? new ApplyError(describeObject(crd), e.status, e.serverMessage) : e;
        }
    }
    const deadline = Date.now() + 60_000;
    for (const crd of crds) {
        for (;;) {
            const r = await client.request("GET", `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
            const established = (r.body?.status?.conditions ?? []).some((c: any) => c.type === "Established" && c.status === "True");
            if (established) break;
            if (Date.now() > deadline) throw new Error(`CRD ${crd.metadata.name} is not Established after 60 s: ${JSON.stringify(r.body?.status?.conditions)}`);
            await sleep(200);
        }
    }
    return crds.map((c) => c.metadata.name);
}

export interface ApplyReport {
    applied: { object: string; fieldManager: string }[];
    /** Warning headers the server sent (PodSecurity on pod templates, deprecations). */
    warnings: { object: string; warning: string }[];
    ms: number;
}

/**
 * Server-side applies the objects in order. With `dryRun` (`dryRun=All`, nothing is stored) the
 * Namespaces are still created for real first: a dry run cannot create the namespace it checks the
 * rest in. With `await`, as `pulumi up` does: an object is applied once every object it waits for is
 * applied and ready (./readiness.ts), objects with nothing between them go at the same time, and a
 * cycle of waits is refused before anything is applied.
 */
export async function applyObjects(
    client: KubeClient,
    ordered: OrderedObject[],
    o: { dryRun?: boolean; log?: (l: string) => void; await?: boolean; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<ApplyReport> {
    const started = Date.now();
    const report: ApplyReport = { applied: [], warnings: [], ms: 0 };
    const one = async (x: OrderedObject, dryRun: boolean) => {
        const name = describeObject(x.object);
        const fieldManager = fieldManagerFor(x);
        const apply = async () => {
            const exists = dryRun ? await client.exists(x.object) : false;
            const r = await client.apply(x.object, { fieldManager, dryRun, force: forceFor(x, dryRun, exists) });
            for (const w of r.warnings) report.warnings.push({ object: name, warning: w });
        };
        try {
            try {
                await apply();
            } catch (e) {
                if (dryRun || !replacedOnChange(x.object, e)) throw e;
                // As `pulumi up` replaces a Job whose template changed: the old one (and its pods) first, the name being fixed.
                o.log?.(`${name}: its template changed and cannot be updated; replacing it`);
                await deleteAndWait(client, x.object, o.signal);
                await apply();
            }
        } catch (e) {
            throw e instanceof KubeError ? new ApplyError(name, e.status, e.serverMessage) : e;
        }
        return { object: name, fieldManager };
    };
    if (o.dryRun) for (const x of ordered.filter((x) => x.object.kind === "Namespace")) await one(x, false);
    if (o.await && !o.dryRun) {
        const cycles = readinessCycles(ordered);
        if (cycles.length) throw new Error(`pulumi up would never finish: ${cycles.join("; ")}`);
        // The first failure stops every other wait (as the engine stops at an error).
        const failed = new AbortController();
        const signal = o.signal ? AbortSignal.any([o.signal, failed.signal]) : failed.signal;
        const done = new Map<string, Promise<void>>();
        const byUrn = new Map(ordered.map((x) => [x.urn, x]));
        const complete = (x: OrderedObject): Promise<void> => {
            let p = done.get(x.urn);
            if (!p) {
                p = (async () => {
                    await Promise.all(x.waitsFor.map((u) => byUrn.get(u)).filter((d): d is OrderedObject => !!d).map(complete));
                    if (signal.aborted) throw new Error(`${describeObject(x.object)}: not applied (the apply failed elsewhere)`);
                    report.applied.push(await one(x, false));
                    await waitUntilReady(client, x.object, { timeoutMs: o.timeoutMs, signal, log: o.log });
                })();
                p.catch(() => failed.abort());
                done.set(x.urn, p);
            }
            return p;
        };
        await Promise.all(ordered.map(complete));
    } else for (const x of ordered) report.applied.push(await one(x, o.dryRun ?? false));
    report.ms = Date.now() - started;
    o.log?.(`${o.dryRun ? "dry-run applied" : "applied"} ${report.applied.length} objects in ${report.ms} ms${report.warnings.length ? `, ${report.warnings.length} warning(s)` : ""}`);
    return report;
}

/**
 * Whether the provider would have replaced the object rather than update it: Pulumi's Kubernetes
 * provider replaces a Job whose `spec.template` (or selector) changed, fields the API server keeps
 * immutable; here the server's refusal of the update says the same.
 */
export function replacedOnChange(o: KubeObject, e: unknown): boolean {
    return o.kind === "Job" && e instanceof KubeError && e.status === 422 && /field is immutable/.test(e.serverMessage);
}

/** Deletes an object with foreground propagation (its dependents first, the provider's default) and waits until it is gone. */
async function deleteAndWait(client: KubeClient, o: KubeObject, signal?: AbortSignal): Promise<void> {
    const at = await client.pathOf(o);
    await client.call("DELETE", at, { kind: "DeleteOptions", apiVersion: "v1", propagationPolicy: "Foreground" });
    const deadline = Date.now() + 300_000;
    while ((await client.request("GET", at)).status !== 404) {
        if (signal?.aborted) throw new Error(`${describeObject(o)}: the replace was stopped`);
        if (Date.now() > deadline) throw new Error(`${describeObject(o)} was not deleted within 5 minutes`);
        await sleep(500);
    }
}
