"""What an off-cluster data scientist does, one step per subcommand, each printing one JSON line.

Run with the MLflow client's default settings (no MLFLOW_ENABLE_PROXY_MULTIPART_* variables): every
artifact goes through MLFLOW_TRACKING_URI, with MLFLOW_TRACKING_USERNAME/PASSWORD when it is the edge.

Usage:
    off_cluster.py reach HOST:PORT...          TCP connect to each: connected, refused, timeout or the error
    off_cluster.py status URL [--login] [--origin ORIGIN] [--post JSON]
                                                HTTP status (and JSON body, if any) of a GET (a POST of
                                                JSON with --post), without credentials or with the
                                                tracking login as basic auth, with an Origin as a browser
                                                sends it
    off_cluster.py generate PATH BYTES          a file of random bytes, streamed; its sha256
    off_cluster.py transfer PATH DST_DIR        mlflow.log_artifact to a new run, then download_artifacts
                                                into DST_DIR; times, sizes and the download's sha256 (the
                                                downloaded copy is deleted once hashed)
    off_cluster.py predict MODEL_URI N          mlflow.pyfunc.load_model, predictions on N wine rows
    off_cluster.py infer URL N                  a v2 inference request on N wine rows, with the tracking
                                                login as basic auth
"""

import base64
import errno
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request

CHUNK = 8 * 1024 * 1024


def reach(targets):
    out = {}
    for target in targets:
        host, port = target.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                out[target] = "connected"
        except ConnectionRefusedError:
            out[target] = "refused"
        except (socket.timeout, TimeoutError):
            out[target] = "timeout"
        except OSError as e:
            out[target] = "unreachable" if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) else f"error: {e}"
    return out


def basic_auth():
    login = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ['MLFLOW_TRACKING_PASSWORD']}"
    return {"authorization": "Basic " + base64.b64encode(login.encode()).decode()}


def _json(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def status(url, login=False, origin=None, post=None):
    headers = {**(basic_auth() if login else {}), **({"origin": origin} if origin else {})}
    if post is not None:
        headers["content-type"] = "application/json"
    req = urllib.request.Request(url, headers=headers, data=post.encode() if post is not None else None, method="POST" if post is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return {"status": r.status, "json": _json(r.read())}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "www_authenticate": e.headers.get("WWW-Authenticate"), "json": _json(e.read())}


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def generate(path, size):
    started = time.monotonic()
    h = hashlib.sha256()
    left = size
    with open(path, "wb") as f:
        while left > 0:
            chunk = os.urandom(min(CHUNK, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return {"path": path, "bytes": size, "sha256": h.hexdigest(), "seconds": time.monotonic() - started}


def client_settings():
    """The MLflow client's transfer settings as it resolves them (all defaults when none is set)."""
    from mlflow import environment_variables as ev

    return {
        "tracking_uri": os.environ.get("MLFLOW_TRACKING_URI"),
        "proxy_multipart_upload": ev.MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD.get(),
        "proxy_multipart_download": ev.MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD.get(),
        "multipart_env": sorted(k for k in os.environ if k.startswith("MLFLOW_ENABLE_PROXY_MULTIPART")),
    }


def transfer(path, dst_dir):
    import mlflow
    import mlflow.artifacts

    name = os.path.basename(path)
    mlflow.set_experiment("off-cluster-transfers")
    with mlflow.start_run(run_name=f"transfer-{name}") as run:
        started = time.monotonic()
        mlflow.log_artifact(path)
        upload = time.monotonic() - started
        artifact_uri = mlflow.get_artifact_uri()
    listed = {f.path: f.file_size for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    dst = tempfile.mkdtemp(prefix="download-", dir=dst_dir)
    started = time.monotonic()
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=name, dst_path=dst)
    download = time.monotonic() - started
    try:
        size = os.path.getsize(local)
        digest = sha256_of(local)
    finally:
        os.remove(local)
        os.rmdir(dst)
    return {
        **client_settings(),
        "run_id": run.info.run_id,
        "artifact_uri": artifact_uri,
        "listed_bytes": listed.get(name),
        "upload_seconds": upload,
        "download_seconds": download,
        "downloaded_bytes": size,
        "downloaded_sha256": digest,
    }


def wine_rows(n):
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True, as_frame=True)
    rows = x.sample(n=n, random_state=7)
    return rows, y[rows.index].tolist()


def predict(model_uri, n):
    import mlflow.pyfunc

    rows, labels = wine_rows(n)
    model = mlflow.pyfunc.load_model(model_uri)
    predictions = [int(v) for v in model.predict(rows)]
    return {**client_settings(), "model_uri": model_uri, "run_id": model.metadata.run_id, "predictions": predictions, "labels": labels}


def infer(url, n):
    rows, labels = wine_rows(n)
    body = json.dumps({"inputs": [{"name": c, "datatype": "FP64", "shape": [n], "data": rows[c].tolist()} for c in rows.columns]}).encode()

    def post(headers):
        req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")[:500]

    anonymous, _ = post({})
    code, answer = post(basic_auth())
    return {"url": url, "status_without_credentials": anonymous, "status": code, "answer": answer, "labels": labels}


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "reach":
        result = reach(args)
    elif command == "status":
        option = lambda name: args[args.index(name) + 1] if name in args else None  # noqa: E731
        result = status(args[0], login="--login" in args, origin=option("--origin"), post=option("--post"))
    elif command == "generate":
        result = generate(args[0], int(args[1]))
    elif command == "transfer":
        result = transfer(args[0], args[1])
    elif command == "predict":
        result = predict(args[0], int(args[1]))
    elif command == "infer":
        result = infer(args[0], int(args[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
