"""The ingest API (Stage 01): producers POST events, the API appends them to the stream.

`POST /v1/events` takes one JSON event, a JSON array of events, or NDJSON, optionally
gzip-compressed, and answers like Kinesis PutRecords: per record `accepted` (with its
event_id) or `rejected` (with a reason), HTTP 200 whenever the request itself was readable.
An answer is sent only after `Stream.append` returned, i.e. once the records are durable.
Rejected records are appended too, as error envelopes under `intake.ERRORS_KEY`.

Refusals of a whole request: 400 (unreadable body), 413 (too large), 415 (content type or
encoding), 429 (the raw writer is too far behind), 503 (stream over its disk budget or
failing); 429 and 503 carry `Retry-After`. `GET /health` and `GET /metrics` (Prometheus
text) report on the API and its stream.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mad.config import Settings, load_settings
from mad.errors import TerminalError, TransientError
from mad.ingest.intake import (
    Accepted,
    BodyError,
    Limits,
    Outcome,
    body_format,
    decode_body,
    parse,
    stream_records,
)
from mad.ingest.metrics import CONTENT_TYPE, IngestMetrics
from mad.ingest.streams import Lag, Stream, StreamCorruptError

log = logging.getLogger(__name__)

PRESSURE_TTL_S = 0.5
LAG_RETRY_AFTER_S = 1
DISK_RETRY_AFTER_S = 5
FAILURE_RETRY_AFTER_S = 1
DRAIN_BYTES = 16 * 2**20
"""After a body goes over the limit, read at most this much more before answering 413, so
the client sees the answer instead of a reset connection."""


# -- response models (documented in /openapi.json; the hot path writes them with orjson) ----


class AcceptedRecord(BaseModel):
    """A record appended to the stream."""

    index: int = Field(description="position of the record in the request, from 0")
    status: Literal["accepted"]
    event_id: str


class RejectedRecord(BaseModel):
    """A record that failed validation; it is kept in the stream's error records."""

    index: int = Field(description="position of the record in the request, from 0")
    status: Literal["rejected"]
    error_code: str = Field(description="reason code, e.g. invalid_json, missing_field")
    message: str


class PutEventsResponse(BaseModel):
    """Outcome of every record of a request, in request order."""

    accepted: int
    rejected: int
    records: list[AcceptedRecord | RejectedRecord]


class ErrorResponse(BaseModel):
    """Why a whole request was refused."""

    error_code: str
    message: str


class HealthResponse(BaseModel):
    status: Literal["ok", "failed"]
    backend: str
    shards: int
    lag_records: int
    disk_bytes: int
    detail: str | None = None


# -- stream pressure ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One look at the stream: the raw writer's lag per shard and the bytes on disk."""

    lag: dict[str, Lag] = field(default_factory=dict)
    disk_bytes: int = 0
    error: str | None = None

    @property
    def lag_records(self) -> int:
        return sum(v.records for v in self.lag.values())


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    retry_after: int


class Pressure:
    """Decides whether the stream can take more, looking at it at most every `ttl` seconds."""

    def __init__(self, stream: Stream, consumer: str, max_lag: int, max_disk: int,
                 ttl: float = PRESSURE_TTL_S) -> None:
        self.stream, self.consumer = stream, consumer
        self.max_lag, self.max_disk, self.ttl = max_lag, max_disk, ttl
        self._cached: tuple[float, Reading] | None = None
        self._lock = threading.Lock()

    def read(self) -> Reading:
        """A fresh reading; a stream error becomes `error` instead of raising."""
        try:
            lag = self.stream.lag(self.consumer)
            disk = _disk_bytes(self.stream)
        except (TransientError, StreamCorruptError, OSError) as err:
            reading = Reading(error=str(err) or type(err).__name__)
        else:
            reading = Reading(lag, disk)
        with self._lock:
            self._cached = (time.monotonic(), reading)
        return reading

    def current(self) -> Reading:
        """The last reading if younger than `ttl`, else a fresh one."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        return self.read()

    def forget(self) -> None:
        self._cached = None

    def refusal(self) -> Refusal | None:
        """None when appends may go ahead; otherwise the 429/503 to answer."""
        r = self.current()
        if r.error is not None:
            return Refusal(503, "stream_unavailable", f"stream is failing: {r.error}",
                           FAILURE_RETRY_AFTER_S)
        if r.disk_bytes > self.max_disk:
            return Refusal(503, "stream_full",
                           f"stream holds {r.disk_bytes} bytes, over ingest.max_disk_bytes "
                           f"({self.max_disk}); the raw writer must catch up",
                           DISK_RETRY_AFTER_S)
        if r.lag_records > self.max_lag:
            return Refusal(429, "writer_behind",
                           f"raw writer '{self.consumer}' is {r.lag_records} records behind, "
                           f"over ingest.max_lag_records ({self.max_lag})", LAG_RETRY_AFTER_S)
        return None


def _disk_bytes(stream: Stream) -> int:
    cheap: Callable[[], int] | None = getattr(stream, "disk_bytes", None)
    return int(cheap()) if callable(cheap) else stream.status().disk_bytes


# -- the app -------------------------------------------------------------------------------


class IngestState:
    """What the handlers share: settings-derived limits, the stream, metrics, failures."""

    def __init__(self, settings: Settings, stream: Stream) -> None:
        ing = settings.ingest
        self.settings = settings
        self.stream = stream
        self.limits = Limits(ing.max_body_bytes, ing.max_record_bytes, ing.max_depth)
        self.pressure = Pressure(stream, settings.writer.consumer, ing.max_lag_records,
                                 ing.max_disk_bytes)
        self.metrics = IngestMetrics()
        self.failure: str | None = None  # last append error, cleared by a good append


def create_app(settings: Settings, stream: Stream, *, close_stream: bool = False) -> FastAPI:
    """The ingest API over `stream`; with `close_stream` the app closes it on shutdown."""
    state = IngestState(settings, stream)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if close_stream:
            stream.close()
            print("ingest API stopped; stream closed", flush=True)

    app = FastAPI(title="mad ingest API", version="1", docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    app.state.ingest = state

    refusals: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": text}
        for code, text in (
            (400, "unreadable body: bad gzip, JSON syntax error, empty"),
            (413, "body over ingest.max_body_bytes (compressed or not)"),
            (415, "content type or encoding not supported"),
            (429, "the raw writer is behind; retry after Retry-After seconds"),
            (503, "the stream is full or failing; retry after Retry-After seconds"),
        )
    }

    @app.post(
        "/v1/events",
        response_model=None,
        responses={200: {"model": PutEventsResponse, "description": "per-record outcome"},
                   **refusals},
        openapi_extra={"requestBody": _REQUEST_BODY_DOC},
        summary="Put events",
    )
    async def put_events(request: Request) -> Response:
        started = time.perf_counter()
        response = await _put_events(state, request)
        state.metrics.requests.inc(code=str(response.status_code))
        state.metrics.request_seconds.observe(time.perf_counter() - started)
        return response

    @app.get("/health", response_model=HealthResponse,
             responses={503: {"model": HealthResponse, "description": "stream failed"}})
    def health(response: Response) -> HealthResponse:
        reading = state.pressure.read()
        detail = reading.error or state.failure
        if detail is not None:
            response.status_code = 503
        return HealthResponse(
            status="failed" if detail else "ok",
            backend=type(state.stream).__name__,
            shards=len(reading.lag),
            lag_records=reading.lag_records,
            disk_bytes=reading.disk_bytes,
            detail=detail,
        )

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE: {}},
                              "description": "Prometheus text format 0.0.4"}})
    def metrics() -> Response:
        m = state.metrics
        reading = state.pressure.read()
        for shard, lag in reading.lag.items():
            m.lag_records.set(lag.records, shard=shard)
        m.lag_seconds.set(max((v.age_seconds for v in reading.lag.values()), default=0.0))
        m.disk_bytes.set(reading.disk_bytes)
        return Response(m.render(), media_type=CONTENT_TYPE)

    return app


_REQUEST_BODY_DOC: dict[str, Any] = {
    "required": True,
    "description": "One event, an array of events, or NDJSON (one event per line); "
                   "`Content-Encoding: gzip` is accepted.",
    "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "object"}, {"type": "array", "items": {"type": "object"}}]}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


async def _put_events(state: IngestState, request: Request) -> Response:
    m = state.metrics
    try:
        body = await read_body(request, state.limits.max_body_bytes)
        m.bytes.inc(len(body))
        fmt = body_format(request.headers.get("content-type"))
        refusal = state.pressure.refusal()
        if refusal is not None:
            return _refuse(state, refusal.status, refusal.code, refusal.message,
                           refusal.retry_after)
        decoded = decode_body(body, request.headers.get("content-encoding"),
                              state.limits.max_body_bytes)
        outcomes = parse(decoded, fmt, state.limits)
    except BodyError as err:
        return _refuse(state, err.status, err.code, err.message)
    records = stream_records(outcomes, datetime.now(UTC))
    started = time.perf_counter()
    try:
        await run_in_threadpool(state.stream.append, records)
    except (TransientError, StreamCorruptError) as err:
        state.failure = str(err)
        state.pressure.forget()
        log.error("stream append failed: %s", err)
        return _refuse(state, 503, "stream_unavailable", f"stream append failed: {err}",
                       FAILURE_RETRY_AFTER_S)
    except TerminalError as err:
        return _refuse(state, 500, "stream_refused", f"stream refused the records: {err}")
    m.append_seconds.observe(time.perf_counter() - started)
    state.failure = None
    return _outcome_response(state, outcomes)


def _outcome_response(state: IngestState, outcomes: list[Outcome]) -> Response:
    items: list[dict[str, Any]] = []
    reasons: Tally[str] = Tally()
    for o in outcomes:
        if isinstance(o, Accepted):
            items.append({"index": o.seq, "status": "accepted", "event_id": o.event_id})
        else:
            reasons[o.reason] += 1
            items.append({"index": o.seq, "status": "rejected", "error_code": o.reason,
                          "message": o.message})
    rejected = sum(reasons.values())
    accepted = len(outcomes) - rejected
    m = state.metrics
    m.records.inc(accepted, result="accepted")
    m.records.inc(rejected, result="rejected")
    for reason, n in reasons.items():
        m.rejected.inc(n, reason=reason)
    body = orjson.dumps({"accepted": accepted, "rejected": rejected, "records": items})
    return Response(body, media_type="application/json")


def _refuse(state: IngestState, status: int, code: str, message: str,
            retry_after: int | None = None) -> Response:
    state.metrics.request_errors.inc(reason=code)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = orjson.dumps({"error_code": code, "message": message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, or BodyError 413 once it passes `max_bytes` (read no further than
    `DRAIN_BYTES` beyond it; the declared Content-Length is checked first)."""
    declared = request.headers.get("content-length", "")
    too_large = BodyError(413, "body_too_large", f"body is over {max_bytes} bytes")
    if declared.isdigit() and int(declared) > max_bytes + DRAIN_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
        elif size > max_bytes + DRAIN_BYTES:
            break
    if size > max_bytes:
        raise too_large
    return b"".join(chunks)


# -- serving -------------------------------------------------------------------------------


def serve_stream(settings: Settings, stream: Stream) -> None:
    """Serve the API on `stream` until SIGTERM or Ctrl-C: then stop accepting and finish the
    requests in flight. The caller owns (and closes) the stream."""
    import uvicorn

    app = create_app(settings, stream)
    ing = settings.ingest
    print(f"ingest API on http://{ing.host}:{ing.port}/v1/events -> "
          f"{ing.stream.backend} stream", flush=True)
    config = uvicorn.Config(app, host=ing.host, port=ing.port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=10)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn already shut down
        uvicorn.Server(config).run()


def serve(settings: Settings) -> None:
    """The API alone on the configured stream (no raw writer beside it)."""
    from mad.ingest.wiring import open_configured_stream

    stream = open_configured_stream(settings)
    try:
        serve_stream(settings, stream)
    finally:
        stream.close()


def main() -> None:
    """`python -m mad.ingest.api`: serve with settings from mad.yaml and MAD_* variables."""
    serve(load_settings())


if __name__ == "__main__":
    main()

