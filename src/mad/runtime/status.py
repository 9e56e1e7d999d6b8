"""The supervisor's status endpoint (`supervisor.status_host:status_port`, 127.0.0.1:8030),
which also serves the read API (`/v1/...`, `/openapi.json`: `mad.query.api`, docs/api.md).

`GET /health`: JSON with each component's status, pid, restarts, last exit, URL and detail,
and `quality` (partitions by the gate's verdict, the last run's score); HTTP 200 when every
required component is running, else 503 (held partitions are data, not health). `GET
/metrics`: restarts and up/down per component, quality results by check and status,
partitions by gate verdict and the last run's quality score, in the Prometheus text format.
Read-only, answered from the supervisor's memory (never the database: the `Reporter` puts
the quality counters on the board), so it costs the same whatever the load.
"""

from __future__ import annotations

import time
from typing import Any

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
    quality = board.counters("quality")
    if quality is not None:
        doc["quality"] = {"partitions": quality["gate"],
                          "last_run_score": quality["last_run_score"]}
    store = board.counters("store")
    if store is not None:
        doc["hot_store"] = store
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
    quality = board.counters("quality")
    if quality is not None:
        lines += quality_lines(quality)
    store = board.counters("store")
    if store is not None and store.get("backend"):
        lines += ["# HELP mad_hot_store_up 1 when the hot store answers, else 0 (reads use "
                  "the lake meanwhile)", "# TYPE mad_hot_store_up gauge",
                  f'mad_hot_store_up{{backend="{_label(str(store["backend"]))}"}} '
                  f'{int(bool(store["up"]))}']
    return "\n".join(lines) + "\n"


def quality_lines(quality: dict[str, Any]) -> list[str]:
    """`mad_quality_results_total{check,status}`, `mad_quality_partitions{gate}` and
    `mad_quality_last_run_score` from `mad.query.quality.counters`."""
    lines = ["# HELP mad_quality_results_total Quality results recorded, by check and status",
             "# TYPE mad_quality_results_total counter"]
    lines += [f'mad_quality_results_total{{check="{_label(check)}",status="{_label(status)}"}}'
              f" {n}" for check, by_status in quality["results"].items()
              for status, n in by_status.items()]
    lines += ["# HELP mad_quality_partitions Partitions by the quality gate's verdict (held: "
              "left out of detection and the dashboard until accepted or passed)",
              "# TYPE mad_quality_partitions gauge"]
    lines += [f'mad_quality_partitions{{gate="{_label(gate)}"}} {n}'
              for gate, n in quality["gate"].items()]
    score = quality["last_run_score"]
    lines += ["# HELP mad_quality_last_run_score Quality score (0-100) of the newest checked "
              "run, NaN before the first", "# TYPE mad_quality_last_run_score gauge",
              f"mad_quality_last_run_score {'NaN' if score is None else f'{score:g}'}"]
    return lines


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def create_app(board: Board, host: str, read_api: ASGIApp | None = None) -> ASGIApp:
    """The endpoint over `board`, bound to `host` (Host names checked as the other APIs);
    `/v1/...` and `/openapi.json` go to `read_api` (the read API, `mad.query.api`, with its
    own token) when given."""

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
        if read_api is not None and (path.startswith("/v1/") or path == "/openapi.json"):
            await read_api(scope, receive, send)
        elif method not in ("GET", "HEAD"):
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
