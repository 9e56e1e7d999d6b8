"""The supervisor's status endpoint (`supervisor.status_host:status_port`, 127.0.0.1:8030).

`GET /health`: JSON with each component's status, pid, restarts, last exit, URL and detail;
HTTP 200 when every required component is running, else 503. `GET /metrics`: restarts and
up/down per component in the Prometheus text format. Read-only, answered from the
supervisor's memory (never the database), so it costs the same whatever the load.
"""

from __future__ import annotations

import time

import orjson

from mad.runtime.health import Board
from mad.web import ASGIApp, Guard, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health_document(board: Board) -> tuple[int, dict[str, object]]:
    """The HTTP status and body of `GET /health`."""
    states = board.snapshot()
    ok = all(s.ok for s in states.values())
    doc: dict[str, object] = {
        "status": "ok" if ok else "degraded",
        "time": time.time(),
        "components": {name: s.public() for name, s in states.items()},
    }
    return (200 if ok else 503), doc


def metrics_text(board: Board) -> str:
    """Prometheus text of the board: `mad_component_up` and `mad_component_restarts_total`."""
    states = board.snapshot()
    lines = ["# HELP mad_component_up 1 when the component is running, else 0",
             "# TYPE mad_component_up gauge"]
    lines += [f'mad_component_up{{component="{_label(n)}"}} {int(s.status == "running")}'
              for n, s in states.items()]
    lines += ["# HELP mad_component_restarts_total Restarts of the component since the "
              "supervisor started", "# TYPE mad_component_restarts_total counter"]
    lines += [f'mad_component_restarts_total{{component="{_label(n)}"}} {s.restarts}'
              for n, s in states.items()]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def create_app(board: Board, host: str) -> ASGIApp:
    """The endpoint over `board`, bound to `host` (Host names checked as the other APIs)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _send(send, 405, b'{"error_code":"method_not_allowed"}', "application/json")
        elif path == "/health":
            status, doc = health_document(board)
            await _send(send, status, orjson.dumps(doc), "application/json")
        elif path == "/metrics":
            await _send(send, 200, metrics_text(board).encode(), CONTENT_TYPE)
        else:
            await _send(send, 404, b'{"error_code":"not_found","message":"try /health or '
                        b'/metrics"}', "application/json")

    return Guard(app, token=None, allowed_hosts=[], bind_host=host,
                 name="supervisor status endpoint")


async def _send(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
