// The rendered stack as `npm run local` reads it: the Kubernetes objects of `npm run render` (same code
// path: runProgram + toKubeObjects, secrets shown), with the look-ups a kubelet would do (Secrets,
// ConfigMaps, pod templates, the Services that select a pod).
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { KubeObject, toKubeObjects } from "../lib/manifests";
import { runProgram } from "../lib/program";
import { applyOrder, OrderedObject } from "../cluster/applyOrder";
import { mapSelectorMatches } from "../../policy/lib/selectors";

export type PodTemplate = { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
export interface PodSpec {
    containers: Container[];
    initContainers?: Container[];
    volumes?: Volume[];
    restartPolicy?: string;
    terminationGracePeriodSeconds?: number;
    serviceAccountName?: string;
    [k: string]: unknown;
}
export interface Container {
    name: string;
    image: string;
    command?: string[];
    args?: string[];
    workingDir?: string;
    env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } }[];
    ports?: { name?: string; containerPort: number; protocol?: string }[];
    volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
    lifecycle?: { preStop?: { exec?: { command: string[] } } };
    resources?: { limits?: Record<string, string>; requests?: Record<string, string> };
    [k: string]: unknown;
}
export interface KeyToPath {
    key: string;
    path: string;
}
export interface ProjectedSource {
    secret?: { name: string; items?: KeyToPath[] };
    configMap?: { name: string; items?: KeyToPath[] };
    serviceAccountToken?: { path: string; expirationSeconds?: number; audience?: string };
    downwardAPI?: { items: { path: string; fieldRef?: { fieldPath: string } }[] };
}
export interface Volume {
    name: string;
    secret?: { secretName: string; items?: KeyToPath[]; defaultMode?: number };
    configMap?: { name: string; items?: KeyToPath[]; defaultMode?: number };
    projected?: { defaultMode?: number; sources: ProjectedSource[] };
    emptyDir?: { sizeLimit?: string };
    persistentVolumeClaim?: { claimName: string };
}

export class RenderedStack {
    /** `order`: the objects in the order `pulumi up` creates them (scripts/cluster/applyOrder.ts). */
    constructor(
        readonly objects: KubeObject[],
        readonly order: OrderedObject[] = [],
    ) {}

    find(kind: string, predicate: (o: KubeObject) => boolean = () => true): KubeObject[] {
        return this.objects.filter((o) => o.kind === kind && predicate(o));
    }

    get(kind: string, name: string): KubeObject {
        const found = this.find(kind, (o) => o.metadata.name === name);
        if (found.length !== 1) throw new Error(`the rendered stack has ${found.length} ${kind} named ${name}, expected one`);
        return found[0];
    }

    /** The one object of a kind (e.g. the Ingress); fails loudly when there are none or several. */
    only(kind: string): KubeObject {
        const found = this.find(kind);
        if (found.length !== 1) throw new Error(`the rendered stack has ${found.length} objects of kind ${kind}, expected one`);
        return found[0];
    }

    get namespace(): string {
        return this.only("Namespace").metadata.name;
    }

    /** A Secret's keys as the kubelet would mount them: `stringData` over base64-decoded `data`. */
    secretData(name: string): Record<string, string> {
        const s = this.get("Secret", name) as any;
        const decoded = Object.fromEntries(Object.entries((s.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
        const data = { ...decoded, ...(s.stringData ?? {}) } as Record<string, string>;
        for (const [k, v] of Object.entries(data)) {
            if (typeof v !== "string" || v.startsWith("<redacted")) throw new Error(`Secret ${name} key ${k} has no value: render with secrets shown`);
        }
        return data;
    }

    configMapData(name: string): Record<string, string> {
        return { ...((this.get("ConfigMap", name) as any).data ?? {}) };
    }

    /** A ConfigMap's files as the kubelet mounts them: `data` as text, `binaryData` base64-decoded. */
    configMapFiles(name: string): Record<string, string | Buffer> {
        const binary = (this.get("ConfigMap", name) as any).binaryData ?? {};
        return { ...this.configMapData(name), ...Object.fromEntries(Object.entries(binary as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, "base64")])) };
    }

    /** The pod template of a Deployment, StatefulSet, Job or CronJob. */
    podTemplate(kind: string, name: string): PodTemplate {
        const o = this.get(kind, name) as any;
        const template = kind === "CronJob" ? o.spec.jobTemplate.spec.template : o.spec.template;
        if (!template?.spec?.containers) throw new Error(`${kind} ${name} has no pod template`);
        return template;
    }

    /** The Deployment or StatefulSet whose pods a Service selector selects (an empty selector selects none). */
    workloadSelectedBy(selector: Record<string, string>): KubeObject | undefined {
        return this.objects.find((o) => ["Deployment", "StatefulSet"].includes(o.kind) && mapSelectorMatches(selector, (o as any).spec.template.metadata?.labels));
    }
}

/**
 * Renders a stack exactly as `npm run render -- --show-secrets --seed <seed>` does. The seed makes
 * generated credentials stable: the same seed, the same passwords.
 */
export async function renderStack(stack: string, seed: string, stackDir?: string): Promise<RenderedStack> {
    const run = await runProgram(stack, { seed, stackDir });
    return new RenderedStack(toKubeObjects(run.resources, true), applyOrder(run.resources, true));
}

/** The seed kept in `<dir>/seed` (created on first use, owner-only), so credentials survive restarts. */
export function persistentSeed(dir: string): string {
    const file = path.join(dir, "seed");
    if (!fs.existsSync(file)) {
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(file, crypto.randomBytes(24).toString("hex") + "\n", { mode: 0o600 });
    }
    return fs.readFileSync(file, "utf8").trim();
}
