"""The read API: the read functions of `mad.query` over HTTP, and nothing else (it never
opens the lake or the state database itself). See docs/api.md.

- `GET /v1/series`, `GET /v1/latest`: aggregate series (`mad.query.series`);
- `GET /v1/metrics/services`, `GET /v1/anomalies`: per service (`mad.query.services`);
- `GET /v1/incidents`, `GET /v1/incidents/{id}`: incidents (`mad.query.incidents`);
- `GET /v1/runs`: ETL runs and detection passes (`mad.query.jobs`);
- `GET /health` (no token needed) and `GET /openapi.json`.

A list route answers `{"rows": [...], "held": [...], "next": <cursor> | null}` (and, for
series, metrics and anomalies, `"source"`: `hot`, `lake` or `hot+lake`, where the rows came
from), or CSV (`format=csv` or `Accept: text/csv`; the cursor in `X-Next-Cursor`, held
partitions in `X-Held`, the source in `X-Source`): a page of `limit` rows (DEFAULT_LIMIT,
at most `api.max_rows`), times ISO-8601 UTC. A cursor holds the next row's offset and a
fingerprint of the request's other parameters, so it is refused with other ones. Each page
calls the read function again, in a worker thread (the routes are sync); the functions
bound the range one call reads.

A refusal is JSON `{"error_code", "message"}` with a one-line message: 400 for a bad
parameter (a `QueryError` of a function too), 401 and 421 from the `Guard`, 404 for an
unknown route or incident, 414 for a query string over MAX_QUERY_BYTES, 503 while there is
no lake or state database (`ConfigError`).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args, get_origin

import orjson
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi import params as fastapi_params
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from mad.config import Settings
from mad.errors import ConfigError, MadError, TransientError
from mad.query import hot, incidents, jobs, series, services
from mad.query.access import QueryError, check_name, first_line, utc
from mad.web import Guard, read_token

DEFAULT_LIMIT = 1000
MAX_QUERY_BYTES = 4096
"""The longest query string accepted (414 above)."""
MAX_SERVICES = 50
"""The most values of a repeatable parameter (`service`) in one request."""
MAX_OFFSET_DIGITS = 12
INCIDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
UNHASHED = frozenset({"cursor", "limit", "format"})
"""Parameters a cursor may be sent with changed (all others must be the same)."""

SERIES_COLUMNS = ("window_start", "service", "series", "count", "avg", "min", "max", "stddev",
                  "p50", "p95", "p99", "outlier_score", "outlier")
METRICS_COLUMNS = ("window_start", "service", "events", "request_rate", "error_rate",
                   "p50_ms", "p95_ms", "p99_ms")
ANOMALY_COLUMNS = ("window_start", "window", "service", "series", "stat", "score", "severity",
                   "observed", "expected", "lower", "upper", "detectors")
INCIDENT_COLUMNS = ("id", "window", "status", "started", "last_seen", "resolved", "origin",
                    "severity", "anomalies", "peak_score", "services", "series", "updated_at",
                    "feedback", "silenced", "alerts_sent")
RUN_COLUMNS = ("id", "kind", "plan", "status", "started", "ended", "duration_s", "rows_in",
               "rows_out", "duplicates", "late", "attempts", "error", "detail")

_TIME = "ISO-8601, e.g. 2026-11-01T00:00:00Z (no offset: UTC)"
Window = Annotated[str, Query(description="window size: 1m, 5m or 1h")]
Start = Annotated[str, Query(description=f"start of the range (included), {_TIME}")]
End = Annotated[str, Query(description=f"end of the range (excluded), {_TIME}")]
OptionalStart = Annotated[str | None, Query(description=f"range start (included), {_TIME}")]
OptionalEnd = Annotated[str | None, Query(description=f"range end (excluded), {_TIME}")]
Services = Annotated[list[str], Query(description=f"a service; repeat for several (at most "
                                                  f"{MAX_SERVICES})")]
OptionalServices = Annotated[list[str] | None, Query(
    description=f"a service; repeat for several (at most {MAX_SERVICES}); default all")]


class ApiError(Exception):
    """A request refused with `status`, `code` and a one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ErrorBody(BaseModel):
    """Why a request was refused."""

    error_code: str
    message: str = Field(description="one line")


class ListPage(BaseModel):
    """One page of a list route (or CSV with `format=csv`)."""

    rows: list[dict[str, Any]]
    held: list[str] = Field(description="partitions held by the quality gate that left "
                            "rows out (dataset/partition)")
    next: str | None = Field(description="cursor of the next page; null on the last one")
    source: str | None = Field(None, description="where the rows came from: hot (the hot "
                               "store), lake, or hot+lake (series, metrics, anomalies)")


_REFUSALS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "a bad parameter: unknown window, bad name, bad time, empty or too long "
              "range, bad cursor, limit out of range, unknown or repeated parameter"),
        (401, "missing or wrong bearer token (when api.auth_token is set)"),
        (414, f"query string over {MAX_QUERY_BYTES} bytes"),
        (421, "Host header not in api.allowed_hosts"),
        (503, "no lake or state database yet"),
    )}
_LISTED: dict[int | str, dict[str, Any]] = {
    200: {"model": ListPage, "description": "a page of rows", "content": {"text/csv": {}}},
    **_REFUSALS}


@dataclass(frozen=True)
class Page:
    """Which rows a list request asks for, and in what form."""

    offset: int
    limit: int
    fingerprint: str
    csv: bool


def create_app(settings: Settings) -> FastAPI:
    """The read API over the query functions, guarded by `api.auth_token` (every route but
    /health) and `api.allowed_hosts`."""
    api = settings.api
    app = FastAPI(title="mad read API", version="1", docs_url=None, redoc_url=None)
    app.add_middleware(Guard, token=read_token(api.auth_token, api.auth_token_file,
                                               "api.auth_token"),
                       allowed_hosts=api.allowed_hosts, bind_host=api.host, name="read API")
    _add_error_handlers(app)
    default_limit = min(DEFAULT_LIMIT, api.max_rows)

    async def paging(
        request: Request,
        limit: int = Query(default_limit, ge=1, le=api.max_rows,
                           description=f"rows per page, 1 to {api.max_rows}"),
        cursor: str | None = Query(None, description="`next` of the previous page"),
        fmt: Literal["json", "csv"] | None = Query(
            None, alias="format", description="json (default) or csv; `Accept: text/csv` "
            "asks for CSV too"),
    ) -> Page:
        fingerprint = _fingerprint(request)
        offset = 0 if cursor is None else _offset(cursor, fingerprint)
        wants_csv = fmt == "csv" or (fmt is None
                                     and "text/csv" in request.headers.get("accept", ""))
        return Page(offset, limit, fingerprint, wants_csv)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_bounded)])

    @v1.get("/series", response_model=None, responses=_LISTED, summary="Aggregate series")
    def get_series(window: Window, start: Start, end: End, service: Services,
                   name: Annotated[str | None, Query(alias="series", description=(
                       "one series of the one service; default every series"))] = None,
                   page: Page = Depends(paging)) -> Response:
        series.check_window(window)
        wanted = _names(service, "service")
        t0, t1 = _time(start, "start"), _time(end, "end")
        if name is None:
            rows = series.aggregates(settings, window, t0, t1, wanted)
        elif len(wanted) != 1:
            raise ApiError(400, "one_service", "series= needs exactly one service=")
        else:
            rows = series.series(settings, window, wanted[0], check_name(name, "series"),
                                 t0, t1)
        return _list_answer(rows, rows.held, SERIES_COLUMNS, page)

    @v1.get("/latest", response_model=None, responses=_LISTED,
            summary="Newest window of each series of a service")
    def get_latest(window: Window,
                   service: Annotated[str, Query(description="one service")],
                   now: Annotated[str | None, Query(description=(
                       f"look back from this time (default: now), {_TIME}"))] = None,
                   page: Page = Depends(paging)) -> Response:
        series.check_window(window)
        check_name(service, "service")
        rows = series.latest(settings, window, service, _optional_time(now, "now"))
        return _list_answer(rows, rows.held, SERIES_COLUMNS, page)

    @v1.get("/metrics/services", response_model=None, responses=_LISTED,
            summary="Request rate, error rate and latency per service and window")
    def get_service_metrics(window: Window, start: Start, end: End,
                            service: OptionalServices = None,
                            page: Page = Depends(paging)) -> Response:
        services.check_window(window)
        wanted = None if service is None else _names(service, "service")
        rows = services.service_metrics(settings, window, _time(start, "start"),
                                        _time(end, "end"), wanted)
        return _list_answer(rows, rows.held, METRICS_COLUMNS, page)

    @v1.get("/anomalies", response_model=None, responses=_LISTED,
            summary="Anomalies detection stored")
    def get_anomalies(start: Start, end: End,
                      service: Annotated[str | None, Query(description="one service")] = None,
                      window: Annotated[str | None, Query(description=(
                          "one window size: 1m, 5m or 1h; default all"))] = None,
                      page: Page = Depends(paging)) -> Response:
        if service is not None:
            check_name(service, "service")
        if window is not None:
            services.check_window(window)
        rows = services.anomalies(settings, _time(start, "start"), _time(end, "end"),
                                  service, window)
        return _list_answer(rows, rows.held, ANOMALY_COLUMNS, page)

    @v1.get("/incidents", response_model=None, responses=_LISTED,
            summary="Incidents that overlap the range, newest first")
    def get_incidents(start: OptionalStart = None, end: OptionalEnd = None,
                      status: Annotated[str | None, Query(description=(
                          "open or resolved; default both"))] = None,
                      page: Page = Depends(paging)) -> Response:
        rows = incidents.incidents(settings, _optional_time(start, "start"),
                                   _optional_time(end, "end"), status,
                                   min(incidents.MAX_LIMIT, page.offset + page.limit + 1))
        return _list_answer(rows, (), INCIDENT_COLUMNS, page)

    @v1.get("/incidents/{incident_id}", response_model=None,
            responses={404: {"model": ErrorBody, "description": "no such incident"},
                       **_REFUSALS},
            summary="One incident: its anomalies and the series around it")
    def get_incident(incident_id: Annotated[str, Path(description=(
            "an incident's id, as /v1/incidents lists it"))]) -> Response:
        if not INCIDENT_ID.fullmatch(incident_id):
            raise ApiError(400, "bad_id", f"bad incident id {incident_id[:64]!r}: a letter or "
                           "digit, then letters, digits, _ . : - (at most 128)")
        try:
            detail = incidents.incident_detail(settings, incident_id)
        except QueryError as err:  # the id's form was checked above: it is not known
            raise ApiError(404, "no_incident", first_line(err)) from None
        return _json(detail)

    @v1.get("/runs", response_model=None, responses=_LISTED,
            summary="ETL runs and detection passes, newest first")
    def get_runs(start: OptionalStart = None, end: OptionalEnd = None,
                 kind: Annotated[str | None, Query(description=(
                     "etl or detect; default both"))] = None,
                 page: Page = Depends(paging)) -> Response:
        rows = jobs.jobs(settings, _optional_time(start, "start"), _optional_time(end, "end"),
                         kind, min(jobs.MAX_LIMIT, page.offset + page.limit + 1))
        return _list_answer(rows, (), RUN_COLUMNS, page)

    @app.get("/health", summary="Up, and the hot store's read counters (no token needed)")
    def health() -> dict[str, Any]:
        return {"status": "ok", "hot": hot.counters()}

    app.include_router(v1)
    return app


# -- what every /v1 request goes through -----------------------------------------------------


async def _bounded(request: Request) -> None:
    """Refuse a query string that is too long, an unknown parameter, or one repeated more
    than it may be (a list parameter MAX_SERVICES times, any other once), before anything
    is parsed or read."""
    size = len(request.scope.get("query_string", b""))
    if size > MAX_QUERY_BYTES:
        raise ApiError(414, "query_too_long",
                       f"the query string has {size} bytes; at most {MAX_QUERY_BYTES}")
    route = request.scope.get("route")
    declared = _declared(route) if isinstance(route, APIRoute) else {}
    for name, count in Counter(k for k, _ in request.query_params.multi_items()).items():
        if name not in declared:
            raise ApiError(400, "unknown_parameter", f"unknown query parameter "
                           f"{name[:64]!r}; allowed here: {', '.join(sorted(declared))}")
        if count > (MAX_SERVICES if declared[name] else 1):
            raise ApiError(400, "too_many_values", f"{name} given {count} times; at most "
                           f"{MAX_SERVICES if declared[name] else 1}")


def _declared(route: APIRoute) -> dict[str, bool]:
    """A route's query parameters: name -> whether it may be repeated (a list)."""
    return {f.alias: _is_list(f.field_info.annotation) for f in get_flat_params(route.dependant)
            if isinstance(f.field_info, fastapi_params.Query)}


def _is_list(annotation: Any) -> bool:
    return any(get_origin(a) is list for a in (annotation, *get_args(annotation)))


def _fingerprint(request: Request) -> str:
    """The route and its parameters but UNHASHED ones, hashed (a cursor carries it)."""
    items = sorted((k, v) for k, v in request.query_params.multi_items() if k not in UNHASHED)
    return hashlib.sha256(orjson.dumps([request.url.path, items])).hexdigest()[:16]


def _cursor(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}.{fingerprint}".encode()).decode().rstrip("=")


def _offset(cursor: str, fingerprint: str) -> int:
    """The row offset a cursor holds; an ApiError when it is not one of ours or was made
    for other parameters."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    offset, _, made_for = text.partition(".")
    if not (offset.isdigit() and len(offset) <= MAX_OFFSET_DIGITS and made_for):
        raise ApiError(400, "bad_cursor", "cursor is not one this API gave (use `next` of "
                       "the previous page, or leave it out to start again)")
    if made_for != fingerprint:
        raise ApiError(400, "cursor_mismatch", "cursor was given for other parameters: send "
                       "it with the same ones (only limit and format may change)")
    return int(offset)


def _time(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "bad_time", f"{name} {value[:64]!r} is not an ISO-8601 time "
                       "like 2026-11-01T00:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _optional_time(value: str | None, name: str) -> datetime | None:
    return None if value is None else _time(value, name)


def _names(values: Sequence[str], what: str) -> list[str]:
    return [check_name(v, what) for v in values]


# -- answers ---------------------------------------------------------------------------------


def _list_answer(rows: Sequence[dict[str, Any]], held: Sequence[str],
                 columns: Sequence[str], page: Page) -> Response:
    """The page of `rows` that `page` asks for, as JSON or CSV."""
    end = page.offset + page.limit
    chunk = list(rows[page.offset:end])
    cursor = _cursor(end, page.fingerprint) if len(rows) > end else None
    source = getattr(rows, "source", None)
    if not page.csv:
        doc: dict[str, Any] = {"rows": chunk, "held": list(held), "next": cursor}
        if source is not None:
            doc["source"] = source
        return _json(doc)
    headers = {"X-Source": source} if source is not None else {}
    if cursor is not None:
        headers["X-Next-Cursor"] = cursor
    if held:
        headers["X-Held"] = ",".join(held)
    return Response(_csv(columns, chunk), media_type="text/csv; charset=utf-8",
                    headers=headers)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc, option=JSON_OPTIONS), status_code=status,
                    media_type="application/json")


def _csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([csv_cell(row.get(c)) for c in columns] for row in rows)
    return out.getvalue()


def csv_cell(value: Any) -> str:
    """One CSV value: empty for None, true/false, times ISO-8601 UTC (`Z`), lists and
    objects as JSON, numbers as Python writes them (floats round-trip)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, list | dict):
        return orjson.dumps(value, option=JSON_OPTIONS).decode()
    return str(value)


# -- refusals --------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> Response:
    lines = message.strip().splitlines()
    return _json({"error_code": code, "message": lines[0] if lines else code}, status)


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as `{"error_code", "message"}`, never a traceback."""

    async def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ApiError):
            return _error(exc.status, exc.code, exc.message)
        if isinstance(exc, QueryError):
            return _error(400, "bad_parameter", str(exc))
        if isinstance(exc, ConfigError):
            return _error(503, "not_ready", str(exc))
        if isinstance(exc, TransientError):
            return _error(503, "unavailable", str(exc))
        if isinstance(exc, MadError):
            return _error(500, "read_failed", str(exc))
        if isinstance(exc, RequestValidationError):
            return _error(400, "bad_parameter", _invalid(exc))
        if isinstance(exc, HTTPException):
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                     "bad_request")
            return _error(exc.status_code, code, f"{exc.detail}: {request.method} "
                          f"{request.url.path} (the routes are listed in /openapi.json)")
        return _error(500, "internal_error", "the request failed; see the server's log")

    for kind in (ApiError, MadError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, refused)


def _invalid(exc: RequestValidationError) -> str:
    """The first problem FastAPI found with the parameters, on one line."""
    errors = exc.errors()
    if not errors:
        return "bad request"
    where = " ".join(str(part) for part in errors[0].get("loc", ())[1:]) or "request"
    return f"{where}: {errors[0].get('msg', 'invalid')}"
