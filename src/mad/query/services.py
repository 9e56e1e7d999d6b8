"""Per service over time, from the aggregates (`md-aggregates`): request rate, error rate and
latency percentiles per window, and the anomalies detection stored (`md-anomalies`).

Series used (one row per window start x service):
- `request_rate`: the `events` series (events of the window, every kind) / window seconds;
- `error_rate`: the `error_rate` series (share of log and APM events at level ERROR);
- `p50_ms`, `p95_ms`, `p99_ms`: percentiles of `LATENCY_SERIES`, `duration_ms`, the catalog's
  APM span duration ("time to serve the request"), the one latency series every service
  emits (its health-probe spans included).

A missing lake is a ConfigError; a range with no aggregates is an empty list. Days the
quality gate holds are left out (`mad.query.gate`): `service_metrics` and `anomalies` return a
`Shown` list whose `held` names the held partitions that hid them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mad import lake
from mad.catalog import SERVICES
from mad.config import Settings
from mad.detect.lake_io import aggregate_days
from mad.query.access import (
    QueryError,
    check_range,
    days_between,
    naive,
    open_lake,
    parquet_rows,
    plain,
)
from mad.query.detection import anomaly_keys, read_anomalies
from mad.query.gate import Shown, held_now

WINDOWS = ("1m", "5m", "1h")
WINDOW_SECONDS = {"1m": 60, "5m": 300, "1h": 3600}
LATENCY_SERIES = "duration_ms"
MAX_DAYS = {"1m": 8.0, "5m": 40.0, "1h": 400.0}
"""The longest range one call reads, per window size (about 12k points per service)."""
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")


def check_window(window: str) -> str:
    if window not in WINDOWS:
        raise QueryError(f"unknown window {window!r}; known: {', '.join(WINDOWS)}")
    return window


def check_service(service: str) -> str:
    if not isinstance(service, str) or not _NAME.fullmatch(service):
        raise QueryError(f"bad service name {service!r}: lowercase a-z 0-9 _ . -")
    return service


def _order(names: set[str]) -> list[str]:
    """Catalog services in catalog order, then any others by name."""
    return [s for s in SERVICES if s in names] + sorted(names - set(SERVICES))


def services(settings: Settings) -> list[str]:
    """The services in the newest day of aggregates (of the smallest window size present),
    catalog services first in catalog order; empty before the first aggregates."""
    store = open_lake(settings)
    for window in WINDOWS:
        days = aggregate_days(store, window)
        if days:
            rows = parquet_rows(store, days[max(days)],
                                "SELECT DISTINCT CAST(service AS VARCHAR) AS service FROM data "
                                "WHERE service IS NOT NULL")
            return _order({str(r["service"]) for r in rows})
    return []


def service_metrics(settings: Settings, window: str, start: datetime, end: datetime,
                    services: Sequence[str] | None = None) -> Shown[dict[str, Any]]:
    """One row per window start in `[start, end)` x service (all, or `services`), in time
    then service order: `window_start`, `service`, `events`, `request_rate` (events/s),
    `error_rate`, `p50_ms`, `p95_ms`, `p99_ms` (None where the window has no such value).
    Days the quality gate holds are left out; `.held` says which partitions hid them."""
    check_window(window)
    start, end = check_range(start, end, MAX_DAYS[window])
    wanted = None if services is None else [check_service(s) for s in services]
    if wanted == []:
        return Shown()
    store = open_lake(settings)
    touched = days_between(start, end)
    gate = held_now(settings)
    hidden, held = gate.days(window), gate.of_days(touched, window)
    keys = [k for day, day_keys in aggregate_days(store, window).items()
            if day in touched and day not in hidden for k in day_keys]
    where = "window_start >= ? AND window_start < ? AND series IN ('events', 'error_rate', ?)"
    params: list[Any] = [LATENCY_SERIES, LATENCY_SERIES, LATENCY_SERIES,
                         naive(start), naive(end), LATENCY_SERIES]
    if wanted is not None:
        where += " AND list_contains(?, CAST(service AS VARCHAR))"
        params.append(wanted)
    rows = parquet_rows(store, keys, f"""
        SELECT window_start, CAST(service AS VARCHAR) AS service,
               max(CASE WHEN series = 'events' THEN avg END) AS events,
               max(CASE WHEN series = 'error_rate' THEN avg END) AS error_rate,
               max(CASE WHEN series = ? THEN p50 END) AS p50_ms,
               max(CASE WHEN series = ? THEN p95 END) AS p95_ms,
               max(CASE WHEN series = ? THEN p99 END) AS p99_ms
        FROM data WHERE {where}
        GROUP BY window_start, service ORDER BY window_start, service""", params)
    seconds = WINDOW_SECONDS[window]
    for row in rows:
        events = row["events"]
        row["events"] = None if events is None else int(events)
        row["request_rate"] = None if events is None else events / seconds
    return Shown(({k: row[k] for k in ("window_start", "service", "events", "request_rate",
                                       "error_rate", "p50_ms", "p95_ms", "p99_ms")}
                  for row in rows), held)


def anomalies(settings: Settings, start: datetime, end: datetime, service: str | None = None,
              window: str | None = None) -> Shown[dict[str, Any]]:
    """The anomalies detection stored with a window start in `[start, end)` (of one service,
    of one window size), oldest first: window_start, window, service, series, stat, score,
    severity, observed, expected, lower, upper (None when not finite), detectors. Days the
    quality gate holds are left out; `.held` says which partitions hid them."""
    start, end = check_range(start, end, MAX_DAYS["1h"])
    if service is not None:
        check_service(service)
    if window is not None:
        check_window(window)
    store = open_lake(settings)
    touched = days_between(start, end)
    gate = held_now(settings)
    hidden, held = gate.days(window), gate.of_days(touched, window)
    prefix = lake.anomalies_prefix()
    keys = [k for k in anomaly_keys(store, window)
            if (day := k[len(prefix):].split("/")[0].removeprefix("date=")) in touched
            and day not in hidden]
    out = []
    for a in read_anomalies(store, keys):
        if not start <= a.window_start < end or (service is not None and a.service != service):
            continue
        row = {k: plain(v) for k, v in a.to_dict().items()}
        row["window_start"] = a.window_start
        out.append(row)
    out.sort(key=lambda r: (r["window_start"], r["service"], r["series"], r["stat"]))
    return Shown(out, held)
