"""Aggregate series and latest values: the hot store for the hours it holds, the lake
(`md-aggregates`) for the rest, merged into one result (`mad.query.hot`).

A row is one window start x service x series of one window size: `window_start`, `service`,
`series`, `count`, `avg`, `min`, `max`, `stddev`, `p50`, `p95`, `p99`, `outlier_score`,
`outlier` (None where not finite), in time, service, series order. Days the quality gate
holds are left out, from either source (`Shown.held` names the partitions).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mad.config import Settings
from mad.detect.lake_io import aggregate_days
from mad.query.access import (
    QueryError,
    check_name,
    check_range,
    days_between,
    naive,
    open_lake,
    parquet_rows,
    utc,
)
from mad.query.gate import Held, Shown, held_now
from mad.query.hot import Span, split, unheld

WINDOWS = ("1m", "5m", "1h")
MAX_DAYS = {"1m": 8.0, "5m": 40.0, "1h": 400.0}
"""The longest range one call reads, per window size (about 12k points per series)."""
MAX_SERIES = 200
LATEST_WITHIN = timedelta(hours=1)
_LAKE_COLUMNS = ('window_start, CAST(service AS VARCHAR) AS service, CAST(series AS VARCHAR) '
                 'AS series, "count", avg, min, max, stddev, p50, p95, p99, outlier_score, '
                 'outlier')


def check_window(window: str) -> str:
    if window not in WINDOWS:
        raise QueryError(f"unknown window {window!r}; known: {', '.join(WINDOWS)}")
    return window


def check_names(names: Sequence[str] | None, what: str) -> list[str] | None:
    """`names` checked as service or series names (lowercase a-z 0-9 _ . -), at most
    MAX_SERIES."""
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    if len(names) > MAX_SERIES:
        raise QueryError(f"at most {MAX_SERIES} {what} names in one call, not {len(names)}")
    for name in names:
        check_name(name, what)
    return sorted(set(names))


def series(settings: Settings, window: str, service: str, name: str, start: datetime,
           end: datetime) -> Shown[dict[str, Any]]:
    """The windows of one series of one service with a start in `[start, end)`."""
    return aggregates(settings, window, start, end, [service], [name])


def aggregates(settings: Settings, window: str, start: datetime, end: datetime,
               services: Sequence[str] | None = None,
               names: Sequence[str] | None = None) -> Shown[dict[str, Any]]:
    """Every aggregate row of `[start, end)` (of `services`, of the series `names`; all when
    None)."""
    check_window(window)
    start, end = check_range(start, end, MAX_DAYS[window])
    wanted_services = check_names(services, "service")
    wanted_series = check_names(names, "series")
    if wanted_services == [] or wanted_series == []:
        return Shown()
    gate = held_now(settings)
    hidden = gate.days(window)
    if wanted_services is not None and wanted_series is not None:
        keys: Any = [f"{a}/{b}" for a in wanted_services for b in wanted_series]
    else:
        keys = None if wanted_services is None and wanted_series is None else (
            lambda k: _picked(k, wanted_services, wanted_series))
    found = split(settings, "aggregates", window, start, end, keys)
    rows = unheld(found.rows, hidden)
    if found.lake:
        rows += lake_aggregates(settings, window, found.lake, wanted_services, wanted_series,
                                gate)
    rows.sort(key=lambda r: (r["window_start"], r["service"], r["series"]))
    return Shown(rows, gate.of_days(days_between(start, end), window), found.source)


def latest(settings: Settings, window: str, service: str,
           now: datetime | None = None) -> Shown[dict[str, Any]]:
    """The newest window of each series of `service` within the last LATEST_WITHIN (to
    `now`), in series order."""
    check_name(service, "service")
    end = utc(now) if now is not None else _now()
    rows = aggregates(settings, window, end - LATEST_WITHIN, end + timedelta(seconds=1),
                      [service])
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        newest[row["series"]] = row
    return Shown((newest[k] for k in sorted(newest)), rows.held, rows.source)


def lake_aggregates(settings: Settings, window: str, spans: Sequence[Span],
                    services: Sequence[str] | None, names: Sequence[str] | None,
                    gate: Held) -> list[dict[str, Any]]:
    """Aggregate rows of `spans` from the lake alone (held days left out)."""
    touched = span_days(spans)
    hidden = gate.days(window)
    store = open_lake(settings)
    files = [k for day, keys in aggregate_days(store, window).items()
             if day in touched and day not in hidden for k in keys]
    where, params = spans_sql(spans)
    if services is not None:
        where += " AND list_contains(?, CAST(service AS VARCHAR))"
        params.append(list(services))
    if names is not None:
        where += " AND list_contains(?, CAST(series AS VARCHAR))"
        params.append(list(names))
    return parquet_rows(store, files, f"SELECT {_LAKE_COLUMNS} FROM data WHERE {where} "
                        "ORDER BY window_start, service, series", params)


def span_days(spans: Sequence[Span]) -> set[str]:
    """The `YYYY-MM-DD` days the spans touch."""
    days: set[str] = set()
    for first, last in spans:
        days |= days_between(first, last)
    return days


def spans_sql(spans: Sequence[Span]) -> tuple[str, list[Any]]:
    """A `window_start` condition over `[start, end)` spans, and its parameters."""
    parts, params = [], []
    for a, b in spans:
        parts.append("(window_start >= ? AND window_start < ?)")
        params += [naive(a), naive(b)]
    return "(" + " OR ".join(parts) + ")", params


def _picked(key: str, services: list[str] | None, names: list[str] | None) -> bool:
    service, _, name = key.partition("/")
    return (services is None or service in services) and (names is None or name in names)


def _now() -> datetime:
    return datetime.now(UTC)

