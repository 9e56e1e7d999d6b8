"""The ingest API (Stage 01): producers POST events, the API appends them to the stream.

`POST /v1/events` takes one JSON event, a JSON array of events, or NDJSON, optionally
gzip-compressed, and answers like Kinesis PutRecords: per record `accepted` (with its
event_id) or `rejected` (with a reason), HTTP 200 whenever the request itself was readable.
An answer is sent only after `Stream.append` returned, i.e. once the records are durable.
Rejected records are appended too, as error envelopes under `intake.ERRORS_KEY`.

Refusals of a whole request: 400 (unreadable body), 408 (body not in within
`ingest.body_timeout_s`; the connection is closed), 413 (too large, too many records), 415
(content type or encoding), 429 (the raw writer is too far behind), 503 (stream over its
disk budget or failing; or, from the server wrapper, `ingest.max_connections` reached); 429
and 503 carry `Retry-After`. A client that goes away before its body has arrived is one log
line and a counter. `GET /health` and `GET /metrics` (Prometheus text) report on the API,
its stream and the raw writer's health report. The app declares its connection bounds in
`app.state.serve_limits` (`connections.py`) for `mad.runtime.servers`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from mad.config import Settings
from mad.errors import TerminalError, TransientError
from mad.ingest.acks import FLUSH_INTERVAL_S, AckCounter
from mad.ingest.connections import ConnectionLimits
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
from mad.ingest.pressure import FAILURE_RETRY_AFTER_S, Pressure
from mad.ingest.streams import Stream, StreamCorruptError
from mad.ingest.wiring import stream_monitor, writer_health
from mad.ingest.writer_health import TARGETS
from mad.state import IngestAcks, open_state
from mad.web import Guard, read_token

log = logging.getLogger(__name__)

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
    """Outcome of the records of a request, in request order: every accepted one, and the
    first `ingest.max_listed_rejections` rejected ones. Past that count the other
    rejections are not listed (an index missing from `records` was rejected) but counted in
    `rejected_by_reason`, and `omitted_rejections` says how many were left out."""

    accepted: int
    rejected: int
    records: list[AcceptedRecord | RejectedRecord]
    omitted_rejections: int | None = Field(
        None, description="rejections not listed in records (only when some were left out)")
    rejected_by_reason: dict[str, int] | None = Field(
        None, description="every rejection counted by error_code (only when some were "
        "left out)")


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


# -- the app -------------------------------------------------------------------------------


class IngestState:
    """What the handlers share: settings-derived limits, the stream and its monitor (the
    stream's own, or a null one: chosen once, here), metrics, failures."""

    def __init__(self, settings: Settings, stream: Stream) -> None:
        ing = settings.ingest
        self.settings = settings
        self.stream = stream
        self.limits = Limits(ing.max_body_bytes, ing.max_record_bytes, ing.max_depth,
                             ing.max_records, ing.max_listed_rejections)
        self.pressure = Pressure(stream_monitor(settings, stream), settings.writer.consumer,
                                 ing.max_lag_records, ing.max_disk_bytes)
        self.metrics = IngestMetrics()
        self.failure: str | None = None  # last append error, cleared by a good append
        self.writer_health = writer_health(settings)  # when the writer runs beside us
        self.acks = AckCounter(lambda: IngestAcks(open_state(settings.state_url)))


def create_app(settings: Settings, stream: Stream) -> FastAPI:
    """The ingest API over `stream`. The caller owns the stream: it serves the app (the
    supervisor, `mad.runtime`) and closes the stream once the server has stopped."""
    state = IngestState(settings, stream)
    app = FastAPI(title="mad ingest API", version="1", docs_url=None, redoc_url=None,
                  lifespan=lambda _app: _count_acks(state))
    app.state.ingest = state
    app.state.serve_limits = ConnectionLimits.from_settings(settings.ingest, state.metrics)
    ing = settings.ingest
    app.add_middleware(Guard, token=read_token(ing.auth_token, ing.auth_token_file,
                                               "ingest.auth_token"),
                       allowed_hosts=ing.allowed_hosts, bind_host=ing.host, name="ingest API")

    refusals: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": text}
        for code, text in (
            (400, "unreadable body: bad gzip, JSON syntax error, empty"),
            (413, "body over ingest.max_body_bytes (compressed or not), or more than "
                  "ingest.max_records records"),
            (408, "request body not received within ingest.body_timeout_s"),
            (415, "content type or encoding not supported"),
            (429, "the raw writer is behind; retry after Retry-After seconds"),
            (503, "the stream is full or failing, or the server holds ingest.max_connections "
                  "connections; retry after Retry-After seconds"),
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
        try:
            response = await _put_events(state, request)
        except ClientDisconnect:
            state.metrics.client_disconnects.inc()
            peer = request.client
            log.warning("ingest API: client %s went away before its body had arrived; "
                        "nothing appended", f"{peer.host}:{peer.port}" if peer else "?")
            return Response(status_code=400)  # nobody reads it
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
        _copy_writer_health(state)
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
        try:
            async with asyncio.timeout(state.settings.ingest.body_timeout_s):
                body = await read_body(request, state.limits.max_body_bytes)
        except TimeoutError:
            return _refuse(state, 408, "body_timeout", "the request body did not arrive "
                           f"within ingest.body_timeout_s ({state.settings.ingest.body_timeout_s}"
                           " s)", close=True)
        m.bytes.inc(len(body))
        fmt = body_format(request.headers.get("content-type"))
        refusal = state.pressure.refusal()
        if refusal is not None:
            return _refuse(state, refusal.status, refusal.code, refusal.message,
                           refusal.retry_after)
        # Inflating and parsing up to 5 MiB is CPU work: in a thread, so /health and the
        # other requests are served meanwhile.
        outcomes, records = await run_in_threadpool(
            _decode, state, body, request.headers.get("content-encoding"), fmt)
    except BodyError as err:
        return _refuse(state, err.status, err.code, err.message)
    started = time.perf_counter()
    try:
        acks = await run_in_threadpool(state.stream.append, records)
    except (TransientError, StreamCorruptError) as err:
        state.failure = str(err)
        state.pressure.forget()
        log.error("stream append failed: %s", err)
        return _refuse(state, 503, "stream_unavailable", f"stream append failed: {err}",
                       FAILURE_RETRY_AFTER_S)
    except TerminalError as err:
        return _refuse(state, 500, "stream_refused", f"stream refused the records: {err}")
    m.append_seconds.observe(time.perf_counter() - started)
    state.acks.add(acks)
    state.failure = None
    return _outcome_response(state, outcomes)


@asynccontextmanager
async def _count_acks(state: IngestState) -> AsyncIterator[None]:
    """While the app serves: add the acknowledgement counts to the state database every
    `FLUSH_INTERVAL_S`, and once more when it stops."""

    async def flushing() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await run_in_threadpool(state.acks.flush)

    task = asyncio.create_task(flushing())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await run_in_threadpool(state.acks.flush)


def _decode(state: IngestState, body: bytes, encoding: str | None,
            fmt: str) -> tuple[list[Outcome], list[tuple[str, bytes]]]:
    """The request's outcomes and the stream records to append (runs in a worker thread)."""
    outcomes = parse(decode_body(body, encoding, state.limits.max_body_bytes), fmt,
                     state.limits)
    return outcomes, stream_records(outcomes, datetime.now(UTC),
                                    state.limits.max_listed_rejections)


def _outcome_response(state: IngestState, outcomes: list[Outcome]) -> Response:
    items: list[dict[str, Any]] = []
    reasons: Tally[str] = Tally()
    listed = state.limits.max_listed_rejections
    for o in outcomes:
        if isinstance(o, Accepted):
            items.append({"index": o.seq, "status": "accepted", "event_id": o.event_id})
        else:
            reasons[o.reason] += 1
            if reasons.total() <= listed:
                items.append({"index": o.seq, "status": "rejected", "error_code": o.reason,
                              "message": o.message})
    rejected = reasons.total()
    accepted = len(outcomes) - rejected
    m = state.metrics
    m.records.inc(accepted, result="accepted")
    m.records.inc(rejected, result="rejected")
    for reason, n in reasons.items():
        m.rejected.inc(n, reason=reason)
    doc: dict[str, Any] = {"accepted": accepted, "rejected": rejected, "records": items}
    if rejected > listed:
        doc["omitted_rejections"] = rejected - listed
        doc["rejected_by_reason"] = dict(reasons)
    return Response(orjson.dumps(doc), media_type="application/json")


def _copy_writer_health(state: IngestState) -> None:
    """The raw writer's counters, from the health report it publishes (when it runs from
    the same data folder: beside the API, or in its own process on this machine)."""
    health = state.writer_health.load()
    if health is None:
        return
    m = state.metrics
    m.writer_unrecorded_files.set(health.unrecorded_files)
    m.writer_report_age.set(max(0.0, time.time() - health.updated_at))
    for target in TARGETS:
        m.writer_failures.copy(health.failures.get(target, 0), target=target)


def _refuse(state: IngestState, status: int, code: str, message: str,
            retry_after: int | None = None, close: bool = False) -> Response:
    """A whole request refused; `close` ends the connection (its body may still be due)."""
    state.metrics.request_errors.inc(reason=code)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if close:
        headers["Connection"] = "close"
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

