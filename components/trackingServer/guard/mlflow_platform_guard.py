"""mlflow-platform's guard in front of MLflow's ASGI app.

Loaded as an MLflow app plugin (`mlflow server --app-name mlflow-platform-guard`, entry point group
`mlflow.app`) from a ConfigMap on PYTHONPATH, so the stock MLflow image runs it. MLflow has no
setting for either rule below, so each is enforced here, before MLflow sees the request:

* Cross-origin requests come only from the origins given to `--cors-allowed-origins`. MLflow itself
  also admits every http://localhost, 127.0.0.1 and [::1] origin, with credentials, and exempts them
  from its block on cross-origin writes: any page a user opens on a local port could read and change
  the registry with the browser's stored basic-auth credentials.
* Artifacts move through the server, never straight to the object store. With an S3 store MLflow
  advertises multipart transfers in /server-info and hands out presigned URLs signed with its
  read-write key; they point at the object store's in-cluster address, which a client outside the
  cluster cannot reach, and work for anyone who holds them. The guard reports both capabilities off
  (clients then proxy every transfer, MLflow's own fallback) and refuses the presigned and multipart
  endpoints.
"""

import json
import re

from mlflow.server.fastapi_app import app as _mlflow_app
from mlflow.server.security_utils import get_allowed_origins_from_env

_SERVER_INFO = re.compile(r"^/(ajax-)?api/3\.0/mlflow/server-info/?$")
_DIRECT_TRANSFER = re.compile(r"^/(ajax-)?api/2\.0/(mlflow-artifacts/(mpu|presigned)(/|$)|mlflow/artifacts/presigned-)")
_DIRECT_TRANSFER_KEYS = ("multipart_uploads_enabled", "multipart_downloads_enabled")


def _header(scope, name):
    return [v for k, v in scope.get("headers", []) if k.lower() == name]


async def _respond(send, status, content_type, body):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


def _without_direct_transfers(send):
    """Wraps `send` so a 200 server-info body reports multipart transfers off."""
    start = None
    chunks = []

    async def wrapped(message):
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            return await send(message)
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        if start["status"] == 200:
            info = json.loads(body)
            for key in _DIRECT_TRANSFER_KEYS:
                info[key] = False
            body = json.dumps(info).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


class PlatformGuard:
    """An ASGI app (a class instance: MLflow would take a plain function for an app factory)."""

    def __init__(self, app, allowed_origins):
        self.app = app
        self.allowed_origins = frozenset(o.encode() for o in allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if any(o not in self.allowed_origins for o in _header(scope, b"origin")):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _respond(send, 403, b"text/plain; charset=utf-8", b"Cross-origin request blocked")
        path = re.sub("/{2,}", "/", scope.get("path", ""))
        if _DIRECT_TRANSFER.match(path):
            error = {
                "error_code": "PERMISSION_DENIED",
                "message": "Direct object-store transfers are off on this platform: artifacts are proxied by the tracking server.",
            }
            return await _respond(send, 403, b"application/json", json.dumps(error).encode())
        if _SERVER_INFO.match(path) and scope["type"] == "http":
            # The body is rewritten, so it must come back uncompressed.
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
            return await self.app({**scope, "headers": headers}, receive, _without_direct_transfers(send))
        return await self.app(scope, receive, send)


app = PlatformGuard(_mlflow_app, get_allowed_origins_from_env() or [])
