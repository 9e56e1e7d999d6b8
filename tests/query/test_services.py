"""Per-service metrics and anomalies against DuckDB on the lake's Parquet files."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mad.catalog import SERVICES
from mad.errors import ConfigError
from mad.etl.transforms.sql import series_names
from mad.query.access import QueryError
from mad.query.services import (
    LATENCY_SERIES,
    WINDOW_SECONDS,
    WINDOWS,
    anomalies,
    service_metrics,
    services,
)
from tests.query.conftest import BuiltLake, duck, lake_settings

DAY = datetime(2026, 11, 1, tzinfo=UTC)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def test_the_latency_series_is_a_catalog_series_every_service_has() -> None:
    from mad.catalog import service_view

    assert LATENCY_SERIES in series_names()
    assert all(LATENCY_SERIES in service_view(s).series for s in SERVICES)


def test_services_are_those_in_the_aggregates(pipeline_lake: BuiltLake) -> None:
    names = {r[0] for r in duck(
        f"SELECT DISTINCT service FROM read_parquet('{pipeline_lake.lake}/md-aggregates/"
        "window=1m/date=2026-11-01/*.parquet')")}
    got = services(pipeline_lake.settings)
    assert set(got) == names and got == [s for s in SERVICES if s in names]


@pytest.mark.parametrize("window", WINDOWS)
def test_service_metrics_are_the_aggregates(pipeline_lake: BuiltLake, window: str) -> None:
    start, end = DAY + timedelta(minutes=30), DAY + timedelta(hours=1, minutes=30)
    got = service_metrics(pipeline_lake.settings, window, start, end)
    want = duck(f"""
        SELECT window_start, service,
               max(avg) FILTER (series = 'events'), max(avg) FILTER (series = 'error_rate'),
               max(p50) FILTER (series = ?), max(p95) FILTER (series = ?),
               max(p99) FILTER (series = ?)
        FROM read_parquet('{pipeline_lake.lake}/md-aggregates/window={window}/*/*.parquet')
        WHERE window_start >= ? AND window_start < ?
        GROUP BY 1, 2 ORDER BY 1, 2""", [LATENCY_SERIES] * 3 + [
        start.replace(tzinfo=None), end.replace(tzinfo=None)])
    assert len(got) == len(want) > 0
    for row, (when, service, events, errors, p50, p95, p99) in zip(got, want, strict=True):
        assert row["window_start"] == when.replace(tzinfo=UTC)
        assert row["window_start"].tzinfo is UTC and row["service"] == service
        assert row["events"] == int(events)
        assert close(row["request_rate"], events / WINDOW_SECONDS[window])
        assert close(row["error_rate"], errors)
        assert all(close(row[k], v) for k, v in (("p50_ms", p50), ("p95_ms", p95),
                                                 ("p99_ms", p99)))
    only = service_metrics(pipeline_lake.settings, window, start, end, ["payments"])
    assert only == [r for r in got if r["service"] == "payments"] and only
    assert service_metrics(pipeline_lake.settings, window, start, end, []) == []


def test_service_metrics_reject_bad_arguments(pipeline_lake: BuiltLake) -> None:
    s = pipeline_lake.settings
    for args, needle in (
        (("2m", DAY, DAY + timedelta(hours=1)), "unknown window"),
        (("1m", DAY + timedelta(hours=1), DAY), "empty time range"),
        (("1m", DAY, DAY + timedelta(days=30)), "longer than"),
        (("1m", DAY, DAY + timedelta(hours=1), ["Payments'; DROP"]), "bad service"),
    ):
        with pytest.raises(QueryError, match=needle):
            service_metrics(s, *args)
    assert service_metrics(s, "1m", DAY + timedelta(days=3), DAY + timedelta(days=4)) == []


def test_anomalies_are_what_detection_stored(pipeline_lake: BuiltLake) -> None:
    path = f"{pipeline_lake.lake}/md-anomalies/*/*.parquet"
    want = duck(f"SELECT window_start, service, series, stat, score FROM "
                      f"read_parquet('{path}') ORDER BY 1, 2, 3, 4")
    got = anomalies(pipeline_lake.settings, DAY - timedelta(days=1), DAY + timedelta(days=1))
    assert [(a["window_start"], a["service"], a["series"], a["stat"], a["score"])
            for a in got] == [(w.replace(tzinfo=UTC), *rest) for w, *rest in want]
    assert len(got) > 0
    one = anomalies(pipeline_lake.settings, DAY, DAY + timedelta(hours=1), service="payments",
                    window="1m")
    assert one == [a for a in got if a["service"] == "payments"
                   and a["window_start"] < DAY + timedelta(hours=1)]
    assert anomalies(pipeline_lake.settings, DAY, DAY + timedelta(hours=1), window="1h") == []
    with pytest.raises(QueryError):
        anomalies(pipeline_lake.settings, DAY, DAY + timedelta(hours=1), service="../x")


def test_a_missing_lake_is_one_error_and_creates_nothing(tmp_path: Path) -> None:
    settings = lake_settings(tmp_path / "typo")
    for call in (lambda: services(settings),
                 lambda: service_metrics(settings, "1m", DAY, DAY + timedelta(hours=1)),
                 lambda: anomalies(settings, DAY, DAY + timedelta(hours=1))):
        with pytest.raises(ConfigError, match="no lake at"):
            call()
    assert not (tmp_path / "typo").exists()


def test_an_unreadable_file_fails_its_call_only(tmp_path: Path,
                                                pipeline_lake: BuiltLake) -> None:
    from mad.errors import MadError
    from tests.query.conftest import copy_lake

    built = copy_lake(pipeline_lake, tmp_path / "copy")
    [path] = list((built.lake / "md-anomalies").rglob("*.parquet"))
    path.write_bytes(b"not parquet")
    with pytest.raises(MadError, match="cannot read md-anomalies/") as err:
        anomalies(built.settings, DAY, DAY + timedelta(days=1))
    assert "\n" not in str(err.value)
    assert anomalies(pipeline_lake.settings, DAY, DAY + timedelta(days=1))  # still reads
