// The MLServer image and the local tier run one package set: images/mlserver/requirements.txt, resolved
// from requirements.in by scripts/tools/lock-mlserver.sh. These checks fail when the image definition,
// the lock, the local installer, the default image tag or the publishing workflow drift apart. (No
// Docker engine here: the image is not built by the tests; the local tier's venv is, from the same lock.)
import assert from "assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { MLFLOW_VERSION, MLSERVER_IMAGE, MLSERVER_IMAGE_FILES, MLSERVER_IMAGE_TAG, MLSERVER_REPOSITORY, MLSERVER_VERSION } from "../../components/images";
import { contentTag } from "../../scripts/lib/imageTag";
import { servingSchema } from "../../components/modelServing/schema";
import { ROOT } from "../harness";

const DIR = path.join(ROOT, "images", "mlserver");
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");
/** `name==version` lines of a requirements file, by normalised name. */
function pins(text: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const line of text.split("\n").map((l) => l.trim())) {
        if (!line || line.startsWith("#")) continue;
        const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$/.exec(line);
        assert.ok(m, `not an exact pin: ${line}`);
        out.set(m[1].toLowerCase().replace(/[-_.]+/g, "-"), m[2]);
    }
    return out;
}

describe("the MLServer image and the local tier install one package set", () => {
    const dockerfile = read("images/mlserver/Dockerfile");
    const lock = pins(read("images/mlserver/requirements.txt"));

    it("the Dockerfile installs exactly the lock (no other pip install, no dependency resolution) from a pinned Python of the local tier's minor", () => {
        const from = /^FROM\s+(\S+)$/m.exec(dockerfile)?.[1];
        assert.match(from ?? "", /^docker\.io\/library\/python:(\d+\.\d+)\.\d+-slim-bookworm$/);
        const minor = /python:(\d+\.\d+)/.exec(from!)![1];
        const local = spawnSync("python3", ["-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"], { encoding: "utf8" }).stdout.trim();
        assert.equal(minor, local, "the local tier's venvs use this machine's python3");
        assert.match(read("images/mlserver/requirements.txt"), new RegExp(`with Python ${minor.replace(".", "\\.")}\\.`), "the lock was resolved with another Python minor");
        assert.match(dockerfile, /^COPY images\/mlserver\/requirements\.txt \/opt\/mlserver\/requirements\.txt$/m);
        const installs = [...dockerfile.matchAll(/pip install[^\n\\]*/g)].map((m) => m[0].trim());
        assert.deepEqual(installs, ["pip install --no-deps -r /opt/mlserver/requirements.txt"]);
        assert.match(dockerfile, /&& pip check/);
        assert.match(dockerfile, /^USER 1000$/m);
    });

    it("the lock holds every top-level pin of requirements.in at its version, and the platform's MLflow and MLServer", () => {
        const top = pins(read("images/mlserver/requirements.in"));
        assert.ok(top.size >= 4);
        for (const [name, version] of top) assert.equal(lock.get(name), version, `${name} in requirements.txt`);
        assert.equal(lock.get("mlflow"), MLFLOW_VERSION);
        assert.equal(lock.get("mlserver"), MLSERVER_VERSION);
        assert.equal(lock.get("mlserver-mlflow"), MLSERVER_VERSION);
        assert.ok(lock.size > 50, `${lock.size} packages: a lock is the whole set, not the top-level pins`);
    });

    it("the local tier's installer builds the model server's venv from the same lock, exactly", () => {
        const installer = read("scripts/tools/install-local.sh");
        assert.match(installer, /mlserver\) venv_part mlserver --lock "\$REPO\/images\/mlserver\/requirements\.txt" ;;/);
        assert.match(installer, /\[ "\$lock" = 1 \] && args\+=\(--no-deps\)/);
    });

    it("the default runtime image is the platform's, tagged by the content of its definition", () => {
        assert.equal(servingSchema.parse({}).runtimeImage, MLSERVER_IMAGE);
        assert.equal(MLSERVER_IMAGE, `${MLSERVER_REPOSITORY}:${MLSERVER_IMAGE_TAG}`);
        const files = Object.fromEntries(MLSERVER_IMAGE_FILES.map((f) => [f, fs.readFileSync(path.join(ROOT, f))]));
        const tag = contentTag(MLSERVER_VERSION, MLSERVER_IMAGE_FILES, (f) => files[f]);
        assert.equal(MLSERVER_IMAGE_TAG, tag, `the image definition changed: set MLSERVER_IMAGE_TAG in components/images.ts to ${tag}`);
        // One more package in the lock, or a changed Dockerfile: another tag.
        for (const f of MLSERVER_IMAGE_FILES) {
            const changed = { ...files, [f]: Buffer.concat([files[f], Buffer.from("\n# changed\n")]) };
            assert.notEqual(contentTag(MLSERVER_VERSION, MLSERVER_IMAGE_FILES, (x) => changed[x]), tag, f);
        }
    });

    it("the repository's workflow builds that Dockerfile and pushes it under that tag", () => {
        const wf = parse(read(".github/workflows/images.yml"));
        const paths: string[] = wf.on.push.paths;
        for (const f of MLSERVER_IMAGE_FILES) assert.ok(paths.includes(f), `the workflow does not run on changes to ${f}`);
        const steps = JSON.stringify(wf.jobs);
        assert.match(steps, /docker build -f images\/mlserver\/Dockerfile/);
        assert.match(steps, /MLSERVER_IMAGE/);
        assert.ok(fs.existsSync(path.join(DIR, "Dockerfile")));
    });
});
