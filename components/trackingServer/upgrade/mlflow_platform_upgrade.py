"""The tracking server's schema upgrade steps, run in the tracking image by the migration Job and after it.

MLflow requires every writer stopped before `mlflow db upgrade` and does not support replicas of two
versions side by side (3.17 release notes). So the migration Job runs, before `mlflow db upgrade`:

    python mlflow_platform_upgrade.py plan

which compares the database's schema revision with the one this image's MLflow migrates to and writes
the plan (`fresh`, `current`, or `upgrade <from> <to>`) to $PLAN_FILE. Only for `upgrade` does it stop
the writers: it records the tracking Deployment's replica count in an annotation, scales it to zero and
waits until none of its pods is left; the Job's next step then dumps the database into the backup
bucket (`pre-upgrade/`) and the last one migrates (`python mlflow_platform_upgrade.py migrate`). A revision this MLflow does not know (the database
was migrated by a newer MLflow) stops the Job: nothing is changed. After the new Deployment rolled,

    python mlflow_platform_upgrade.py resume

scales it back to the recorded count where nothing else did (under an HPA the Deployment has no replica
count of its own), and removes the annotation.

Kubernetes is reached as any in-cluster client does (KUBERNETES_SERVICE_HOST/PORT, the projected token
and CA); the database at $BACKEND_STORE_URI, whose credentials libpq reads from PG* variables.
"""

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
REPLICAS_ANNOTATION = "mlflow-platform.io/replicas-before-upgrade"
FIELD_MANAGER = "mlflow-platform-upgrade"


def log(message):
    print(f"mlflow-platform-upgrade: {message}", flush=True)


def fail(message):
    print(f"mlflow-platform-upgrade: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


class Kube:
    def __init__(self):
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ["KUBERNETES_SERVICE_PORT"]
        host = f"[{host}]" if ":" in host else host
        self.base = f"https://{host}:{port}"
        self.sa_dir = os.environ.get("SA_DIR", SA_DIR)
        self.context = ssl.create_default_context(cafile=os.path.join(self.sa_dir, "ca.crt"))

    def call(self, method, path, body=None, content_type="application/json"):
        with open(os.path.join(self.sa_dir, "token")) as f:
            token = f.read().strip()
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code == 404 and method == "GET":
                return None
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("message", detail)
            except ValueError:
                pass
            fail(f"{method} {path}: HTTP {e.code}: {detail}")

    def merge_patch(self, path, body):
        return self.call("PATCH", f"{path}?fieldManager={FIELD_MANAGER}", body, "application/merge-patch+json")


def deployment_path():
    namespace = os.environ["NAMESPACE"]
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{os.environ['DEPLOYMENT']}"


def schema_plan():
    """(plan, current, head): fresh, current, upgrade; exits for a revision this MLflow does not know."""
    import sqlalchemy
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError
    from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision, _get_schema_version

    head = _get_latest_schema_revision()
    engine = sqlalchemy.create_engine(os.environ["BACKEND_STORE_URI"])
    try:
        current = _get_schema_version(engine)
    finally:
        engine.dispose()
    if current is None:
        return "fresh", current, head
    if current == head:
        return "current", current, head
    try:
        known = ScriptDirectory.from_config(_get_alembic_config(db_url="")).get_revision(current)
    except CommandError:
        known = None
    if known is None:
        import mlflow

        fail(
            f"the database's schema revision {current} is not one MLflow {mlflow.__version__} knows: a newer "
            "MLflow migrated it. Nothing was changed. Set tracking.image back to that version, or restore the "
            "pre-upgrade dump taken before that upgrade (README: Upgrading MLflow)."
        )
    return "upgrade", current, head


def stop_writers(kube):
    path = deployment_path()
    deployment = kube.call("GET", path)
    if deployment is None:
        log(f"no Deployment {os.environ['DEPLOYMENT']} yet: no writer to stop")
        return
    annotations = deployment["metadata"].get("annotations") or {}
    replicas = deployment["spec"].get("replicas", 1)
    # A retried Job finds the count it recorded before scaling down; keep that one.
    if REPLICAS_ANNOTATION not in annotations:
        kube.merge_patch(path, {"metadata": {"annotations": {REPLICAS_ANNOTATION: str(replicas)}}})
    if replicas:
        kube.merge_patch(f"{path}/scale", {"spec": {"replicas": 0}})
        log(f"scaled Deployment {os.environ['DEPLOYMENT']} from {replicas} to 0 replicas")
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    namespace = os.environ["NAMESPACE"]
    deadline = time.monotonic() + float(os.environ.get("STOP_TIMEOUT_SECONDS", "600"))
    while True:
        pods = kube.call("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={urllib.parse.quote(selector)}")["items"]
        if not pods:
            log("no tracking server pod is left: nothing writes to the database")
            return
        if time.monotonic() > deadline:
            fail(f"{len(pods)} tracking server pods still exist: {', '.join(p['metadata']['name'] for p in pods)}")
        time.sleep(2)


def plan():
    kind, current, head = schema_plan()
    line = kind if kind != "upgrade" else f"upgrade {current} {head}"
    if kind == "upgrade":
        log(f"schema {current} -> {head}: stopping the writers, then a dump, then the migration")
        stop_writers(Kube())
    else:
        log({"fresh": f"empty database: the migration creates schema {head}", "current": f"schema {head} is current: nothing to stop or dump"}[kind])
    with open(os.environ["PLAN_FILE"], "w") as f:
        f.write(line + "\n")


def migrate():
    """`mlflow db upgrade`, as MLflow 3.17's does it: an empty database gets MLflow's initial tables first.
    The `db upgrade` of older versions (3.11.1) fails on an empty database ("relation metrics does not
    exist"), leaving table creation to the first server start, every replica at once."""
    import sqlalchemy
    from mlflow.store.db import utils

    engine = utils.create_sqlalchemy_engine_with_retry(os.environ["BACKEND_STORE_URI"])
    try:
        if not sqlalchemy.inspect(engine).get_table_names():
            log("empty database: creating MLflow's tables")
            utils._initialize_tables(engine)
        else:
            utils._upgrade_db(engine)
        log(f"schema at {utils._get_schema_version(engine)}")
    finally:
        engine.dispose()


def resume():
    kube = Kube()
    path = deployment_path()
    deployment = kube.call("GET", path)
    recorded = ((deployment or {}).get("metadata", {}).get("annotations") or {}).get(REPLICAS_ANNOTATION)
    if recorded is None:
        log("no upgrade to resume from")
        return
    replicas = deployment["spec"].get("replicas", 0)
    target = replicas or int(recorded)
    if target != replicas:
        kube.merge_patch(f"{path}/scale", {"spec": {"replicas": target}})
        log(f"scaled Deployment {os.environ['DEPLOYMENT']} back to {target} replicas")
    else:
        log(f"Deployment {os.environ['DEPLOYMENT']} already runs {replicas} replicas")
    kube.merge_patch(path, {"metadata": {"annotations": {REPLICAS_ANNOTATION: None}}})
    # `pulumi up` ends when this Job does: once the new version serves again.
    deadline = time.monotonic() + float(os.environ.get("STOP_TIMEOUT_SECONDS", "600"))
    while target and (kube.call("GET", path).get("status", {}).get("availableReplicas") or 0) < 1:
        if time.monotonic() > deadline:
            fail(f"Deployment {os.environ['DEPLOYMENT']} has no available replica after the upgrade")
        time.sleep(2)
    log("the tracking server serves again")


if __name__ == "__main__":
    commands = {"plan": plan, "migrate": migrate, "resume": resume}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        fail(f"usage: python mlflow_platform_upgrade.py {'|'.join(commands)}")
    commands[sys.argv[1]]()
