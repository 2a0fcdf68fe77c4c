// Where the local platform keeps things under its directory (default .local/), and how a pod's volumes
// are laid out there: PersistentVolumeClaims are kept across runs, Secret/ConfigMap files and emptyDirs
// are made afresh at every start, as a kubelet does for a new pod.
import * as fs from "fs";
import * as path from "path";
import type { LocalMount, LocalVolume } from "./mapping";
import { freePort } from "../lib/ports";
import { portIsFree } from "./supervisor";

export interface Owner {
    uid: number;
    gid: number;
}

export class Layout {
    constructor(readonly root: string) {}

    get logs(): string {
        return path.join(this.root, "logs");
    }
    get pids(): string {
        return path.join(this.root, "pids");
    }
    /** Data kept across runs: a PersistentVolumeClaim (`<claim template>-<statefulset>-0`, as Kubernetes names it), Prometheus's TSDB, the Kubernetes control plane (etcd, PKI). */
    claim(name: string): string {
        return path.join(this.root, "data", name);
    }
    /** The per-start directory of a pod (its volumes). */
    pod(name: string): string {
        return path.join(this.root, "run", name);
    }

    /**
     * Lays out a pod's volumes and returns volume name → local directory. Files get the volume's
     * defaultMode; `owner` (when the process runs as another user) gets every directory and file.
     */
    materialize(podName: string, volumes: Record<string, LocalVolume>, owner?: Owner): Record<string, string> {
        const podDir = this.pod(podName);
        fs.rmSync(podDir, { recursive: true, force: true });
        fs.mkdirSync(podDir, { recursive: true, mode: 0o755 });
        if (owner) fs.chownSync(podDir, owner.uid, owner.gid);
        const dirs: Record<string, string> = {};
        for (const [name, v] of Object.entries(volumes)) {
            if (v.kind === "persistent") {
                const dir = this.claim(v.claim);
                fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
                fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
                if (owner) fs.chownSync(dir, owner.uid, owner.gid);
                dirs[name] = dir;
                continue;
            }
            const dir = path.join(podDir, name);
            fs.mkdirSync(dir, { recursive: true, mode: v.kind === "files" ? 0o750 : 0o755 });
            if (v.kind === "files") {
                for (const [rel, content] of Object.entries(v.files)) {
                    const file = path.join(dir, rel);
                    if (!file.startsWith(dir + path.sep)) throw new Error(`volume ${name}: file ${rel} escapes its directory`);
                    fs.mkdirSync(path.dirname(file), { recursive: true });
                    fs.writeFileSync(file, content, { mode: v.mode & 0o777 });
                    fs.chmodSync(file, v.mode & 0o777);
                    if (owner) fs.chownSync(file, owner.uid, owner.gid);
                }
            }
            if (owner) fs.chownSync(dir, owner.uid, owner.gid);
            dirs[name] = dir;
        }
        return dirs;
    }

    /**
     * The container's view of its mounts as a symlink tree (`<tree>/run/secrets/users/readwrite` → the
     * volume's directory), so a path naming a parent of mounts resolves as in the container.
     */
    mountTree(podName: string, container: string, mounts: LocalMount[]): string {
        const tree = path.join(this.pod(podName), `.mounts-${container}`);
        fs.rmSync(tree, { recursive: true, force: true });
        for (const m of mounts) {
            const link = path.join(tree, m.mountPath);
            fs.mkdirSync(path.dirname(link), { recursive: true, mode: 0o755 });
            fs.symlinkSync(m.localPath, link);
        }
        return tree;
    }

    /**
     * Loopback ports by key (e.g. `svc/mlflow-postgres/5432`, `ingress`), kept in ports.json so URLs stay
     * the same from run to run; a saved port that is taken now is replaced by a free one.
     */
    async ports(keys: string[]): Promise<Record<string, number>> {
        const file = path.join(this.root, "ports.json");
        const saved: Record<string, number> = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
        const out: Record<string, number> = {};
        const used = new Set<number>();
        for (const key of keys) {
            const want = saved[key];
            if (want !== undefined && !used.has(want) && (await portIsFree(want))) out[key] = want;
            else {
                let p = await freePort();
                while (used.has(p)) p = await freePort();
                out[key] = p;
            }
            used.add(out[key]);
        }
        fs.mkdirSync(this.root, { recursive: true });
        fs.writeFileSync(file, JSON.stringify({ ...saved, ...out }, null, 2) + "\n");
        return out;
    }
}
