"""The read API on a real uvicorn server (a free loopback port) over the pipeline's lake:
every route answers what its read function returns for the same arguments, as JSON and as
CSV, pages through the rows with a cursor, refuses every bad parameter with a one-line 400,
and is guarded by the token and the Host check; `mad api serve` starts and stops cleanly."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from mad.config import Settings
from mad.query import incidents, jobs, series, services
from mad.query.api import (
    ANOMALY_COLUMNS,
    INCIDENT_COLUMNS,
    MAX_QUERY_BYTES,
    MAX_SERVICES,
    METRICS_COLUMNS,
    RUN_COLUMNS,
    SERIES_COLUMNS,
    create_app,
)
from mad.runtime.servers import ServerThread
from tests.conftest import free_port
from tests.query.conftest import BuiltLake, lake_settings

DAY = datetime(2026, 11, 1, tzinfo=UTC)
START, END = "2026-11-01T00:00:00Z", "2026-11-01T02:00:00Z"
T0, T1 = DAY, DAY + timedelta(hours=2)
TOKEN = "r3ad-t0ken"


def serve(settings: Settings) -> Iterator[str]:
    port = free_port()
    server = ServerThread(create_app(settings), "127.0.0.1", port, "mad-api-test")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def api(pipeline_lake: BuiltLake) -> Iterator[httpx.Client]:
    for url in serve(pipeline_lake.settings):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


@pytest.fixture(scope="module")
def guarded(pipeline_lake: BuiltLake) -> Iterator[httpx.Client]:
    settings = lake_settings(pipeline_lake.root, **{"api.auth_token": TOKEN})
    for url in serve(settings):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


def jsonable(value: Any) -> Any:
    """A read function's result as the API's JSON holds it (times ISO-8601 UTC)."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC))


def get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    resp = client.get(path, params=params)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = resp.json()
    return body


Call = Callable[[Settings], Any]
LISTS: list[tuple[str, dict[str, Any], Call, tuple[str, ...]]] = [
    ("/v1/series", {"window": "1m", "service": "payments", "series": "duration_ms",
                    "start": START, "end": END},
     lambda s: series.series(s, "1m", "payments", "duration_ms", T0, T1), SERIES_COLUMNS),
    ("/v1/series", {"window": "5m", "service": "gateway", "start": START, "end": END},
     lambda s: series.aggregates(s, "5m", T0, T1, ["gateway"]), SERIES_COLUMNS),
    ("/v1/series", {"window": "1h", "service": ["gateway", "accounts"], "start": START,
                    "end": END},
     lambda s: series.aggregates(s, "1h", T0, T1, ["gateway", "accounts"]), SERIES_COLUMNS),
    ("/v1/latest", {"window": "1m", "service": "payments", "now": END},
     lambda s: series.latest(s, "1m", "payments", T1), SERIES_COLUMNS),
    ("/v1/metrics/services", {"window": "1m", "start": START, "end": END},
     lambda s: services.service_metrics(s, "1m", T0, T1), METRICS_COLUMNS),
    ("/v1/metrics/services", {"window": "5m", "start": START, "end": END,
                              "service": ["payments", "accounts"]},
     lambda s: services.service_metrics(s, "5m", T0, T1, ["payments", "accounts"]),
     METRICS_COLUMNS),
    ("/v1/anomalies", {"start": START, "end": END},
     lambda s: services.anomalies(s, T0, T1), ANOMALY_COLUMNS),
    ("/v1/anomalies", {"start": START, "end": END, "service": "accounts", "window": "1m"},
     lambda s: services.anomalies(s, T0, T1, "accounts", "1m"), ANOMALY_COLUMNS),
    ("/v1/incidents", {}, lambda s: incidents.incidents(s), INCIDENT_COLUMNS),
    ("/v1/incidents", {"start": START, "end": END, "status": "open"},
     lambda s: incidents.incidents(s, T0, T1, "open"), INCIDENT_COLUMNS),
    ("/v1/runs", {}, lambda s: jobs.jobs(s), RUN_COLUMNS),
    ("/v1/runs", {"kind": "etl"}, lambda s: jobs.jobs(s, kind="etl"), RUN_COLUMNS),
]
IDS = [f"{path}?{'&'.join(sorted(params))}" for path, params, _, _ in LISTS]


@pytest.mark.parametrize(("path", "params", "call", "columns"), LISTS, ids=IDS)
def test_a_list_route_answers_what_its_read_function_returns(
        api: httpx.Client, pipeline_lake: BuiltLake, path: str, params: dict[str, Any],
        call: Call, columns: tuple[str, ...]) -> None:
    want = call(pipeline_lake.settings)
    assert want, "the lake should give rows here"
    body = get(api, path, **params, limit=10_000)
    assert body["rows"] == jsonable(list(want))
    assert body["held"] == list(getattr(want, "held", []))
    assert body["next"] is None
    assert body.get("source") == getattr(want, "source", None)
    assert all(set(row) == set(columns) for row in want)  # CSV leaves nothing out


def test_times_are_iso_8601_utc(api: httpx.Client) -> None:
    rows = get(api, "/v1/series", window="1m", service="payments", series="duration_ms",
               start=START, end=END)["rows"]
    assert rows[0]["window_start"] == "2026-11-01T00:00:00Z"
    offset = get(api, "/v1/series", window="1m", service="payments", series="duration_ms",
                 start="2026-11-01T01:00:00+01:00", end=END)["rows"]
    assert offset == rows  # 01:00+01:00 is midnight UTC


def test_an_incident_in_full_is_its_detail(api: httpx.Client, pipeline_lake: BuiltLake
                                           ) -> None:
    first = incidents.incidents(pipeline_lake.settings)[0]["id"]
    body = get(api, f"/v1/incidents/{first}")
    assert body == jsonable(incidents.incident_detail(pipeline_lake.settings, first))
    assert body["series"] and body["anomalies"]
    missing = api.get("/v1/incidents/inc-19990101T0000-nobody")
    assert missing.status_code == 404 and missing.json()["error_code"] == "no_incident"


def csv_value(cell: str, value: Any) -> bool:
    """Whether a CSV cell holds the JSON value `value`."""
    if value is None:
        return cell == ""
    if isinstance(value, bool):
        return cell == ("true" if value else "false")
    if isinstance(value, int | float):
        return float(cell) == value
    if isinstance(value, str):
        return cell == value
    return bool(orjson.loads(cell) == value)


@pytest.mark.parametrize(("path", "params", "call", "columns"),
                         [LISTS[1], LISTS[4], LISTS[6], LISTS[8], LISTS[10]],
                         ids=[IDS[1], IDS[4], IDS[6], IDS[8], IDS[10]])
def test_csv_has_a_header_and_the_same_rows(api: httpx.Client, path: str,
                                            params: dict[str, Any], call: Call,
                                            columns: tuple[str, ...]) -> None:
    rows = get(api, path, **params, limit=10_000)["rows"]
    asked: tuple[tuple[dict[str, Any], dict[str, str]], ...] = (
        ({**params, "limit": 10_000, "format": "csv"}, {}),
        ({**params, "limit": 10_000}, {"Accept": "text/csv"}))
    for ask, headers in asked:
        resp = api.get(path, params=ask, headers=headers)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/csv; charset=utf-8"
        table = list(csv.reader(io.StringIO(resp.text)))
        assert tuple(table[0]) == columns
        assert len(table) - 1 == len(rows)
        for line, row in zip(table[1:], rows, strict=True):
            assert all(csv_value(cell, row[c]) for cell, c in zip(line, columns, strict=True)), (
                line, row)


def pages(client: httpx.Client, path: str, params: dict[str, Any], limit: int,
          fmt: str = "json") -> list[list[Any]]:
    """Every page of a list, following the cursor: JSON rows, or CSV lines."""
    out: list[list[Any]] = []
    cursor: str | None = None
    while True:
        ask = {**params, "limit": limit, "format": fmt}
        if cursor is not None:
            ask["cursor"] = cursor
        resp = client.get(path, params=ask)
        assert resp.status_code == 200, resp.text
        if fmt == "json":
            out.append(resp.json()["rows"])
            cursor = resp.json()["next"]
        else:
            out.append(list(csv.reader(io.StringIO(resp.text)))[1:])
            cursor = resp.headers.get("x-next-cursor")
        if cursor is None:
            return out
        assert len(out) < 1000


def test_paging_yields_every_row_once_in_order(api: httpx.Client, pipeline_lake: BuiltLake
                                               ) -> None:
    s = pipeline_lake.settings
    params = {"window": "1m", "service": "payments", "start": START, "end": END}
    want = jsonable(list(series.aggregates(s, "1m", T0, T1, ["payments"])))
    got = pages(api, "/v1/series", params, limit=97)
    assert len(got) == -(-len(want) // 97) and all(len(p) == 97 for p in got[:-1])
    assert [row for page in got for row in page] == want
    lines = pages(api, "/v1/series", params, limit=500, fmt="csv")
    assert len([line for page in lines for line in page]) == len(want)
    assert [line[2] for page in lines for line in page] == [row["series"] for row in want]
    for path, call in (("/v1/runs", jobs.jobs), ("/v1/incidents", incidents.incidents)):
        assert [r for page in pages(api, path, {}, limit=1) for r in page] == jsonable(call(s))


def test_a_cursor_is_only_good_for_the_same_parameters(api: httpx.Client) -> None:
    params = {"window": "1m", "service": "payments", "start": START, "end": END}
    first = get(api, "/v1/series", **params, limit=10)
    cursor = first["next"]
    assert cursor is not None
    again = get(api, "/v1/series", **params, limit=20, cursor=cursor)  # limit may change
    assert again["rows"][0] != first["rows"][0]
    for other_path, other in (("/v1/series", {**params, "service": "gateway"}),
                              ("/v1/series", {**params, "window": "5m"}),
                              ("/v1/metrics/services", {k: v for k, v in params.items()
                                                        if k != "service"})):
        resp = api.get(other_path, params={**other, "cursor": cursor})
        assert resp.status_code == 400 and resp.json()["error_code"] == "cursor_mismatch"
    for bad in ("nope", "!!!", "", "LTEuYWJj"):  # the last is base64 of "-1.abc"
        resp = api.get("/v1/series", params={**params, "cursor": bad})
        assert resp.status_code == 400 and resp.json()["error_code"] == "bad_cursor", bad


RANGE = {"start": START, "end": END}
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/series", {"window": "2m", "service": "payments", **RANGE}, "unknown window"),
    ("/v1/metrics/services", {"window": "1d", **RANGE}, "unknown window"),
    ("/v1/anomalies", {"window": "2m", **RANGE}, "unknown window"),
    ("/v1/series", {"window": "1m", "service": "Pay ments", **RANGE}, "bad service name"),
    ("/v1/series", {"window": "1m", "service": "payments", "series": "../x", **RANGE},
     "bad series name"),
    ("/v1/metrics/services", {"window": "1m", "service": "x;drop", **RANGE},
     "bad service name"),
    ("/v1/latest", {"window": "1m", "service": "UPPER"}, "bad service name"),
    ("/v1/series", {"window": "1m", "service": "payments", "start": "yesterday", "end": END},
     "not an ISO-8601 time"),
    ("/v1/anomalies", {"start": START, "end": "2026-13-01"}, "not an ISO-8601 time"),
    ("/v1/runs", {"start": "soon"}, "not an ISO-8601 time"),
    ("/v1/series", {"window": "1m", "service": "payments", "start": END, "end": START},
     "empty time range"),
    ("/v1/anomalies", {"start": START, "end": START}, "empty time range"),
    ("/v1/series", {"window": "1m", "service": "payments", "start": "2026-10-01T00:00:00Z",
                    "end": END}, "longer than the 8 days"),
    ("/v1/metrics/services", {"window": "1m", "start": "2026-10-01", "end": END},
     "longer than the 8 days"),
    ("/v1/series", {"window": "1m", "service": "payments"}, "start: Field required"),
    ("/v1/metrics/services", {"window": "1m", "start": START}, "end: Field required"),
    ("/v1/anomalies", {}, "Field required"),
    ("/v1/series", {"window": "1m", **RANGE}, "service: Field required"),
    ("/v1/anomalies", {**RANGE, "limit": 0}, "limit: Input should be greater than or equal"),
    ("/v1/anomalies", {**RANGE, "limit": 10_001}, "limit: Input should be less than or equal"),
    ("/v1/runs", {"limit": "many"}, "limit: Input should be a valid integer"),
    ("/v1/runs", {"format": "xml"}, "format: Input should be 'json' or 'csv'"),
    ("/v1/anomalies", {**RANGE, "services": "payments"}, "unknown query parameter 'services'"),
    ("/v1/incidents", {"id": "x"}, "unknown query parameter 'id'"),
    ("/v1/anomalies", {**RANGE, "service": ["payments", "gateway"]}, "service given 2 times"),
    ("/v1/series", {"window": ["1m", "5m"], "service": "payments", **RANGE},
     "window given 2 times"),
    ("/v1/series", {"window": "1m", "service": ["payments", "gateway"], "series": "events",
                    **RANGE}, "series= needs exactly one service="),
    ("/v1/incidents", {"status": "closed"}, "unknown incident status"),
    ("/v1/runs", {"kind": "compact"}, "unknown job kind"),
    ("/v1/incidents", {"start": "2020-01-01T00:00:00Z", "end": END}, "longer than the 400"),
]


@pytest.mark.parametrize(("path", "params", "says"), BAD,
                         ids=[f"{p}-{s}" for p, _, s in BAD])
def test_a_bad_parameter_is_a_400_with_one_line(api: httpx.Client, path: str,
                                                params: dict[str, Any], says: str) -> None:
    resp = api.get(path, params=params)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert set(body) == {"error_code", "message"}
    assert says in body["message"] and "\n" not in body["message"]


def test_bounded_requests(api: httpx.Client) -> None:
    many = api.get("/v1/series", params={"window": "1m", **RANGE, "service": [
        f"svc{n}" for n in range(MAX_SERVICES + 1)]})
    assert many.status_code == 400 and many.json()["error_code"] == "too_many_values"
    at_most = api.get("/v1/series", params={"window": "1m", **RANGE, "service": [
        f"svc{n}" for n in range(MAX_SERVICES)]})
    assert at_most.status_code == 200 and at_most.json()["rows"] == []
    long = api.get("/v1/runs", params={"kind": "x" * MAX_QUERY_BYTES})
    assert long.status_code == 414 and long.json()["error_code"] == "query_too_long"
    bad_id = api.get("/v1/incidents/bad%20id%3B")
    assert bad_id.status_code == 400 and bad_id.json()["error_code"] == "bad_id"
    climbing = api.get("/v1/incidents/..%2F..%2Fstate.db")
    assert climbing.status_code == 404 and climbing.json()["error_code"] == "not_found"
    assert api.get("/v1/nowhere").json()["error_code"] == "not_found"
    assert api.post("/v1/runs").status_code == 405


def test_no_lake_yet_is_a_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    empty = lake_settings(tmp_path_factory.mktemp("no_lake"))
    for url in serve(empty):
        for path, params in (("/v1/series", {"window": "1m", "service": "payments", **RANGE}),
                             ("/v1/runs", {}), ("/v1/incidents", {})):
            resp = httpx.get(f"{url}{path}", params=params)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error_code"] == "not_ready"
            assert resp.json()["message"].startswith("no ")
        assert httpx.get(f"{url}/health").status_code == 200


def test_health_is_open_and_counts_the_hot_store(api: httpx.Client) -> None:
    body = get(api, "/health")
    assert body["status"] == "ok"
    assert set(body["hot"]) == {"hot_reads", "lake_reads", "hot_failures"}


def test_the_token_guards_every_route_but_health(guarded: httpx.Client) -> None:
    assert guarded.get("/health").status_code == 200
    for path in ("/v1/runs", "/v1/incidents", "/openapi.json"):
        missing = guarded.get(path)
        assert missing.status_code == 401 and missing.json()["error_code"] == "unauthorized"
        wrong = guarded.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200, path


def test_other_host_names_are_refused(api: httpx.Client) -> None:
    assert api.get("/v1/runs", headers={"Host": "evil.example.com"}).status_code == 421
    assert api.get("/v1/runs", headers={"Host": "localhost:8030"}).status_code == 200


def test_the_openapi_document_lists_the_routes(api: httpx.Client) -> None:
    doc = get(api, "/openapi.json")
    assert {"/v1/series", "/v1/latest", "/v1/metrics/services", "/v1/anomalies",
            "/v1/incidents", "/v1/incidents/{incident_id}", "/v1/runs", "/health"} <= set(
        doc["paths"])
    names = {p["name"] for p in doc["paths"]["/v1/series"]["get"]["parameters"]}
    assert names == {"window", "start", "end", "service", "series", "limit", "cursor",
                     "format"}
    assert api.get("/docs").status_code == 404


def test_mad_api_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "api", "serve", "--port",
                             str(port)], cwd=tmp_path, env=plain_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        health = None
        for _ in range(150):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
        assert health is not None and health.status_code == 200
        runs = httpx.get(f"http://127.0.0.1:{port}/v1/runs")
        assert runs.status_code == 503  # no state database in this folder yet
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stdout is not None and b"read API on" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
