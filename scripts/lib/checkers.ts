// The trusted checkers behind `npm run check`: how each is run on a directory of rendered manifests, how
// its output becomes findings, and how findings are matched against the waivers in WAIVERS.md.
//
// One finding = { checker, check id, object "Kind/name", message }. Each checker's own output format is
// parsed here (all four print JSON); the parsers are pure functions so the tests can feed them outputs
// captured from the real tools (tests/fixtures/check/).
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parsePrintEnv } from "./printEnv";
import { ROOT } from "./program";
import { ensureSchemas } from "./checkersSchemas";
import { KUBERNETES_VERSION, schemaVersionOf } from "./kubernetesVersion";

export const CHECKERS = ["kubeconform", "kube-score", "kube-linter", "checkov"] as const;
export type CheckerName = (typeof CHECKERS)[number];

/**
 * The Kubernetes minor the manifests are validated against (kubeconform schemas, kube-score's
 * deprecations): the minor of the control plane the cluster tier runs (scripts/tools/kubernetes.env).
 */
export const DEFAULT_KUBERNETES_VERSION = schemaVersionOf(KUBERNETES_VERSION);

/**
 * kube-score runs all its default checks plus these optional ones:
 *  - container-seccomp-profile: the restricted Pod Security profile requires a seccomp profile;
 *  - container-ports-check: port names and numbers must be valid (probes and Services refer to them).
 * Left off: container-resource-requests-equal-limits, container-cpu-requests-equal-limits,
 * container-memory-requests-equal-limits, container-ephemeral-storage-request-equals-limit. They ask
 * for Guaranteed QoS, a sizing policy that the stack config deliberately does not take (requests are
 * what is scheduled, limits leave burst room for uploads and migrations); they say nothing about
 * correctness or security.
 */
export const KUBE_SCORE_OPTIONAL_CHECKS = ["container-seccomp-profile", "container-ports-check"];

export interface Finding {
    checker: CheckerName;
    check: string;
    /** `Kind/name` */
    object: string;
    message: string;
}

export interface CheckerRun {
    checker: CheckerName;
    version: string;
    /** What was run: distinct checks (kube-score, kube-linter, checkov) or objects validated (kubeconform). */
    checksRun: string;
    findings: Finding[];
    /** Set when the checker could not run; its findings are then unknown. */
    notRun?: string;
}

// ---------------------------------------------------------------------------------------------------
// Waivers

export interface Waiver {
    checker: CheckerName;
    check: string;
    /** `Kind/name`, or a pattern where `*` matches any characters (`*` alone: every object). */
    object: string;
    /** Stacks the waiver is limited to (`Kind/name@dev,staging` in WAIVERS.md); undefined: every stack. */
    stacks?: string[];
    reason: string;
    why: string;
    /** 1-based line in WAIVERS.md. */
    line: number;
}

const WAIVER_COLUMNS = ["checker", "check id", "object", "reason", "why the alternative is worse"];

/** Splits a markdown table row into trimmed cells; `\|` stays a literal pipe. */
export function splitRow(line: string): string[] {
    let s = line.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
    return s.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

const unquote = (cell: string): string => cell.replace(/^`(.*)`$/, "$1").trim();

/**
 * Reads the waivers table from WAIVERS.md: the first markdown table whose header is exactly
 * checker | check id | object | reason | why the alternative is worse (case-insensitive). A plain line
 * parser is enough for a table of plain cells (no markdown library is needed); a malformed row, an
 * unknown checker or an empty reason is an error, so a waiver can never be silently ignored.
 * The object cell is `Kind/name` or `*` (`*` inside a name is a wildcard), optionally followed by
 * `@stack[,stack]` to limit the waiver to those stacks.
 */
export function parseWaivers(markdown: string): Waiver[] {
    const lines = markdown.split(/\r?\n/);
    const start = lines.findIndex((l) => l.trim().startsWith("|") &&
        splitRow(l).map((c) => c.toLowerCase()).join("|") === WAIVER_COLUMNS.join("|"));
    if (start < 0) throw new Error(`WAIVERS.md: no table with the columns ${WAIVER_COLUMNS.join(" | ")}`);
    if (!/^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/.test(lines[start + 1] ?? "")) {
        throw new Error(`WAIVERS.md:${start + 2}: expected the table's separator row`);
    }
    const waivers: Waiver[] = [];
    for (let i = start + 2; i < lines.length && lines[i].trim().startsWith("|"); i++) {
        const cells = splitRow(lines[i]);
        const where = `WAIVERS.md:${i + 1}`;
        if (cells.length !== WAIVER_COLUMNS.length) throw new Error(`${where}: expected ${WAIVER_COLUMNS.length} cells, found ${cells.length}`);
        const [checker, check, objectCell, reason, why] = cells.map(unquote);
        const [object, stackList] = objectCell.split("@");
        const stacks = stackList === undefined ? undefined : stackList.split(",").map((x) => x.trim());
        if (!(CHECKERS as readonly string[]).includes(checker)) throw new Error(`${where}: unknown checker "${checker}" (one of ${CHECKERS.join(", ")})`);
        if (!check) throw new Error(`${where}: empty check id`);
        if (!object || (object !== "*" && !/^[A-Za-z*]+\/\S+$/.test(object))) throw new Error(`${where}: object must be Kind/name or *, got "${objectCell}"`);
        if (stacks && stacks.some((x) => !/^[A-Za-z0-9_.-]+$/.test(x))) throw new Error(`${where}: stacks after @ must be a comma-separated list of stack names, got "${objectCell}"`);
        if (!reason || !why) throw new Error(`${where}: a waiver needs a reason and why the alternative is worse`);
        waivers.push({ checker: checker as CheckerName, check, object, ...(stacks ? { stacks } : {}), reason, why, line: i + 1 });
    }
    return waivers;
}

const globToRegExp = (glob: string): RegExp =>
    new RegExp(`^${glob.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);

/** Whether a waiver applies to a stack (no stack given: only waivers for every stack). */
const appliesTo = (w: Waiver, stack?: string): boolean => !w.stacks || (stack !== undefined && w.stacks.includes(stack));

/**
 * The first waiver that covers a finding: same checker, same check id (case-insensitive), object
 * matches, and the waiver is not limited to other stacks.
 */
export function findWaiver(f: Finding, waivers: Waiver[], stack?: string): Waiver | undefined {
    return waivers.find((w) => w.checker === f.checker && w.check.toLowerCase() === f.check.toLowerCase() &&
        globToRegExp(w.object).test(f.object) && appliesTo(w, stack));
}

// ---------------------------------------------------------------------------------------------------
// Output parsers. `objectOf` maps a manifest file (as the tool printed it) to its `Kind/name`, where the
// tool does not say which object a result belongs to in a usable form.

type ObjectOf = (file: string) => string | undefined;

/** kubeconform `-output json`: invalid resources and resources that could not be validated. */
export function parseKubeconform(stdout: string): { findings: Finding[]; objects: number } {
    const out = JSON.parse(stdout) as { resources?: any[]; summary?: Record<string, number> };
    const findings: Finding[] = [];
    for (const r of out.resources ?? []) {
        if (r.status === "statusValid" || r.status === "statusSkipped") continue;
        const object = `${r.kind}/${r.name}`;
        if (r.status === "statusInvalid") {
            const detail = String(r.msg).replace(/^.*?jsonschema validation failed with '[^']*' - /s, "").replace(/\s+/g, " ").trim();
            findings.push({ checker: "kubeconform", check: "schema", object, message: detail });
        } else {
            const check = /could not find schema/.test(r.msg) ? "schema-missing" : "error";
            findings.push({ checker: "kubeconform", check, object, message: String(r.msg) });
        }
    }
    const s = out.summary ?? {};
    const objects = (s.valid ?? 0) + (s.invalid ?? 0) + (s.errors ?? 0) + (s.skipped ?? 0);
    return { findings, objects };
}

/** kube-score `score -o json` (output version v2): every check below "OK" that was not skipped. */
export function parseKubeScore(stdout: string): { findings: Finding[]; checks: string[] } {
    const objects = JSON.parse(stdout) as any[];
    const findings: Finding[] = [];
    const run = new Set<string>();
    for (const o of objects) {
        const object = `${o.type_meta.kind}/${o.object_meta.name}`;
        for (const c of o.checks ?? []) {
            const ignored = c.skipped && (c.comments ?? []).some((m: any) => / is ignored$/.test(m.summary));
            if (!ignored) run.add(c.check.id);
            // kube-score grades: 10 all OK, 7 almost OK (printed as OK), 5 warning, 1 critical.
            if (c.skipped || c.grade >= 7) continue;
            const severity = c.grade <= 1 ? "CRITICAL" : "WARNING";
            const comments = c.comments?.length ? c.comments : [{ path: "", summary: c.check.name, description: "" }];
            for (const m of comments) {
                const where = m.path ? `${m.path}: ` : "";
                findings.push({ checker: "kube-score", check: c.check.id, object, message: `[${severity}] ${where}${m.summary}` });
            }
        }
    }
    return { findings, checks: [...run].sort() };
}

/** kube-linter `lint --format json`: Checks (enabled), Reports (findings), Summary. */
export function parseKubeLinter(stdout: string): { findings: Finding[]; checks: string[]; version?: string } {
    const out = JSON.parse(stdout) as { Checks?: { name: string }[]; Reports?: any[] | null; Summary?: any };
    const findings = (out.Reports ?? []).map((r): Finding => {
        const k = r.Object?.K8sObject ?? {};
        return {
            checker: "kube-linter",
            check: r.Check,
            object: `${k.GroupVersionKind?.Kind}/${k.Name}`,
            message: r.Remediation ? `${r.Diagnostic?.Message} (${r.Remediation.trim()})` : String(r.Diagnostic?.Message),
        };
    });
    return { findings, checks: (out.Checks ?? []).map((c) => c.name).sort(), version: out.Summary?.KubeLinterVersion };
}

/** checkov `-o json --framework kubernetes`: failed checks; the object is found from the file it came from. */
export function parseCheckov(stdout: string, objectOf: ObjectOf = () => undefined): { findings: Finding[]; checks: string[] } {
    const parsed = JSON.parse(stdout);
    const reports = (Array.isArray(parsed) ? parsed : [parsed]).filter((r) => r.check_type === "kubernetes" || r.results);
    const findings: Finding[] = [];
    const run = new Set<string>();
    for (const report of reports) {
        const results = report.results ?? {};
        for (const key of ["passed_checks", "failed_checks", "skipped_checks"]) {
            for (const c of results[key] ?? []) run.add(c.check_id);
        }
        for (const c of results.failed_checks ?? []) {
            // `resource` is Kind.namespace.name for plain objects, but graph checks (CKV2_*) name
            // synthetic Pods with their labels appended: the file is the reliable key.
            const [kind, ...rest] = String(c.resource).split(".");
            const object = objectOf(c.file_abs_path ?? "") ?? `${kind}/${rest.length > 1 ? rest[1] : rest[0]}`;
            findings.push({ checker: "checkov", check: c.check_id, object, message: c.check_name });
        }
    }
    return { findings, checks: [...run].sort() };
}

// ---------------------------------------------------------------------------------------------------
// Tools and running them

export interface Tools {
    cache: string;
    kubeconform: string;
    kubeconformVersion: string;
    kubeScore: string;
    kubeScoreVersion: string;
    kubeLinter: string;
    kubeLinterVersion: string;
    checkov: string;
    checkovVersion: string;
    k8sSchemaWheel: string;
    prometheusCrds: string;
    /** Tool name → why it could not be installed. */
    missing: Partial<Record<CheckerName | "k8s-schemas" | "prometheus-crds", string>>;
}

export const INSTALL_SCRIPT = path.join(ROOT, "scripts", "tools", "install-checkers.sh");

/**
 * Runs scripts/tools/install-checkers.sh (idempotent; installs on first use) and returns where the tools
 * are. Its progress and errors go to this process's stderr.
 */
export function installTools(): Tools {
    const r = spawnSync("bash", [INSTALL_SCRIPT, "--print-env"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    if (r.error) throw r.error;
    process.stderr.write(r.stderr);
    const env = parsePrintEnv(r.stdout);
    if (!env.CACHE) throw new Error(`${INSTALL_SCRIPT} failed (exit ${r.status}): ${r.stderr.trim()}`);
    const missing: Tools["missing"] = {};
    for (const name of (env.FAILED ?? "").split(" ").filter(Boolean)) {
        const reason = r.stderr.split("\n").find((l) => l.includes(`cannot install ${name}:`));
        missing[name as CheckerName] = reason ? reason.replace(/^.*cannot install [^:]+: /, "") : "could not be installed";
    }
    return {
        cache: env.CACHE,
        kubeconform: env.KUBECONFORM, kubeconformVersion: env.KUBECONFORM_VERSION,
        kubeScore: env.KUBE_SCORE, kubeScoreVersion: env.KUBE_SCORE_VERSION,
        kubeLinter: env.KUBE_LINTER, kubeLinterVersion: env.KUBE_LINTER_VERSION,
        checkov: env.CHECKOV, checkovVersion: env.CHECKOV_VERSION,
        k8sSchemaWheel: env.K8S_SCHEMA_WHEEL,
        prometheusCrds: env.PROMETHEUS_CRDS,
        missing,
    };
}

/** The project's pinned CRDs (crds/). */
export function crdDirs(): string[] {
    return [path.join(ROOT, "crds")];
}

function yamlFiles(dir: string): string[] {
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) return yamlFiles(p);
        return /\.ya?ml$/.test(e.name) ? [p] : [];
    }).sort();
}


interface Exec { code: number | null; stdout: string; stderr: string }

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Exec> {
    return new Promise((resolve) => {
        const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("error", (e) => resolve({ code: null, stdout, stderr: stderr + String(e) }));
        child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
}

const lastLines = (s: string, n = 3): string => s.trim().split("\n").slice(-n).join(" | ");

export interface RunOptions {
    kubernetesVersion?: string;
    /** .kube-linter.yaml to use (default: the repo's). */
    kubeLinterConfig?: string;
    /** Checkers to run (default: all four). */
    only?: CheckerName[];
}

/** Runs the checkers on every YAML file in `dir` (in parallel) and returns one result per checker. */
export async function runCheckers(dir: string, tools: Tools, index: Map<string, string>, options: RunOptions = {}): Promise<CheckerRun[]> {
    const k8s = options.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSION;
    const files = yamlFiles(dir);
    const objectOf: ObjectOf = (file) => index.get(path.resolve(file)) ?? index.get(file);
    const wanted = new Set(options.only ?? CHECKERS);

    const notRun = (checker: CheckerName, version: string, why: string): CheckerRun =>
        ({ checker, version, checksRun: "-", findings: [], notRun: why });
    const guard = async (checker: CheckerName, version: string, fn: () => Promise<CheckerRun>): Promise<CheckerRun> => {
        if (tools.missing[checker]) return notRun(checker, version, `not installed: ${tools.missing[checker]}`);
        try {
            return await fn();
        } catch (e) {
            return notRun(checker, version, `failed: ${(e as Error).message}`);
        }
    };

    const kubeconform = () => guard("kubeconform", tools.kubeconformVersion, async () => {
        if (tools.missing["k8s-schemas"]) throw new Error(`no Kubernetes schemas: ${tools.missing["k8s-schemas"]}`);
        const crdFiles = [...crdDirs().flatMap(yamlFiles), ...yamlFiles(tools.prometheusCrds)];
        const schemas = ensureSchemas(tools.cache, { wheel: tools.k8sSchemaWheel, kubernetesVersion: k8s, crdFiles });
        const args = ["-strict", "-summary", "-output", "json", "-kubernetes-version", k8s.replace(/^v/, ""),
            ...schemas.locations.flatMap((l) => ["-schema-location", l]), ...files];
        const r = await exec(tools.kubeconform, args);
        if (!r.stdout.trim().startsWith("{")) throw new Error(`exit ${r.code}: ${lastLines(r.stderr || r.stdout)}`);
        const { findings, objects } = parseKubeconform(r.stdout);
        return { checker: "kubeconform", version: tools.kubeconformVersion, checksRun: `${objects} objects`, findings };
    });

    const kubeScore = () => guard("kube-score", tools.kubeScoreVersion, async () => {
        const minor = `v${k8s.replace(/^v/, "").split(".").slice(0, 2).join(".")}`;
        const args = ["score", "-o", "json", "--kubernetes-version", minor,
            ...KUBE_SCORE_OPTIONAL_CHECKS.flatMap((c) => ["--enable-optional-test", c]), ...files];
        const r = await exec(tools.kubeScore, args);
        if (!r.stdout.trim().startsWith("[")) throw new Error(`exit ${r.code}: ${lastLines(r.stderr || r.stdout)}`);
        const { findings, checks } = parseKubeScore(r.stdout);
        return { checker: "kube-score", version: tools.kubeScoreVersion, checksRun: String(checks.length), findings };
    });

    const kubeLinter = () => guard("kube-linter", tools.kubeLinterVersion, async () => {
        const config = options.kubeLinterConfig ?? path.join(ROOT, ".kube-linter.yaml");
        const r = await exec(tools.kubeLinter, ["lint", "--config", config, "--format", "json", ...files]);
        if (!r.stdout.trim().startsWith("{")) throw new Error(`exit ${r.code}: ${lastLines(r.stderr || r.stdout)}`);
        const { findings, checks } = parseKubeLinter(r.stdout);
        return { checker: "kube-linter", version: tools.kubeLinterVersion, checksRun: String(checks.length), findings };
    });

    const checkov = () => guard("checkov", tools.checkovVersion, async () => {
        // --skip-download: no call to Prisma Cloud for guidelines or custom policies; offline and repeatable.
        const env = { ...process.env, BC_SKIP_MAPPING: "TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2: "false", PYTHONWARNINGS: "ignore" };
        const r = await exec(tools.checkov, ["-d", dir, "--framework", "kubernetes", "-o", "json", "--compact", "--skip-download"], env);
        const text = r.stdout.trim();
        if (!text.startsWith("{") && !text.startsWith("[")) throw new Error(`exit ${r.code}: ${lastLines(r.stderr || r.stdout)}`);
        const { findings, checks } = parseCheckov(text, objectOf);
        return { checker: "checkov", version: tools.checkovVersion, checksRun: String(checks.length), findings };
    });

    const runners: Record<CheckerName, () => Promise<CheckerRun>> = {
        kubeconform, "kube-score": kubeScore, "kube-linter": kubeLinter, checkov,
    };
    return Promise.all(CHECKERS.filter((c) => wanted.has(c)).map((c) => runners[c]()));
}

// ---------------------------------------------------------------------------------------------------
// Report

export interface Verdict {
    table: string;
    unwaived: Finding[];
    waived: { finding: Finding; waiver: Waiver }[];
    notRun: CheckerRun[];
    unusedWaivers: Waiver[];
}

function renderTable(rows: string[][]): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
    return [line(rows[0]), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
}

/** Applies the waivers (those of `stack`) and builds the one summary table. */
export function judge(runs: CheckerRun[], waivers: Waiver[], stack?: string): Verdict {
    const unwaived: Finding[] = [];
    const waived: Verdict["waived"] = [];
    const rows = [["checker", "version", "checks run", "findings", "waived", "unwaived"]];
    for (const run of runs) {
        let w = 0;
        for (const f of run.findings) {
            const waiver = findWaiver(f, waivers, stack);
            if (waiver) {
                waived.push({ finding: f, waiver });
                w++;
            } else {
                unwaived.push(f);
            }
        }
        rows.push(run.notRun
            ? [run.checker, run.version, "NOT RUN (see below)", "-", "-", "-"]
            : [run.checker, run.version, run.checksRun, String(run.findings.length), String(w), String(run.findings.length - w)]);
    }
    const used = new Set(waived.map((x) => x.waiver));
    const ran = new Set(runs.filter((r) => !r.notRun).map((r) => r.checker));
    return {
        table: renderTable(rows),
        unwaived,
        waived,
        notRun: runs.filter((r) => r.notRun),
        unusedWaivers: waivers.filter((w) => !used.has(w) && ran.has(w.checker) && appliesTo(w, stack)),
    };
}
