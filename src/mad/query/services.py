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

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mad import lake
from mad.catalog import SERVICES
from mad.config import Settings
from mad.detect.lake_io import aggregate_days
from mad.query.access import (
    check_name,
    check_range,
    days_between,
    open_lake,
    parquet_rows,
    plain,
)
from mad.query.detection import anomaly_keys, read_anomalies
from mad.query.gate import Shown, held_now
from mad.query.hot import Span, merged, split, unheld
from mad.query.series import MAX_DAYS, WINDOWS, check_window, span_days, spans_sql

WINDOW_SECONDS = {"1m": 60, "5m": 300, "1h": 3600}
LATENCY_SERIES = "duration_ms"
METRIC_SERIES = ("events", "error_rate", LATENCY_SERIES)
__all__ = [
    "MAX_DAYS",
    "WINDOWS",
    "anomalies",
    "check_service",
    "check_window",
    "service_metrics",
    "services",
]


def check_service(service: str) -> str:
    return check_name(service, "service")


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
    touched = days_between(start, end)
    gate = held_now(settings)
    hidden, held = gate.days(window), gate.of_days(touched, window)
    keys: Any = ([f"{svc}/{name}" for svc in wanted for name in METRIC_SERIES]
                 if wanted is not None else lambda k: k.partition("/")[2] in METRIC_SERIES)
    found = split(settings, "aggregates", window, start, end, keys)
    rows = _pivot(unheld(found.rows, hidden))
    if found.lake:
        rows += _lake_metrics(settings, window, found.lake, wanted, hidden)
    seconds = WINDOW_SECONDS[window]
    for row in rows:
        events = row["events"]
        row["events"] = None if events is None else int(events)
        row["request_rate"] = None if events is None else events / seconds
    rows.sort(key=lambda r: (r["window_start"], r["service"]))
    return Shown(({k: row[k] for k in ("window_start", "service", "events", "request_rate",
                                       "error_rate", "p50_ms", "p95_ms", "p99_ms")}
                  for row in rows), held, found.source)


def _pivot(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hot store rows as `service_metrics` rows (before rates), as the lake's SQL does."""
    out: dict[tuple[Any, str], dict[str, Any]] = {}
    for r in rows:
        row = out.setdefault((r["window_start"], r["service"]), {
            "window_start": r["window_start"], "service": r["service"], "events": None,
            "error_rate": None, "p50_ms": None, "p95_ms": None, "p99_ms": None})
        if r["series"] == "events":
            row["events"] = r["avg"]
        elif r["series"] == "error_rate":
            row["error_rate"] = r["avg"]
        elif r["series"] == LATENCY_SERIES:
            row["p50_ms"], row["p95_ms"], row["p99_ms"] = r["p50"], r["p95"], r["p99"]
    return list(out.values())


def _lake_metrics(settings: Settings, window: str, spans: Sequence[Span],
                  wanted: list[str] | None, hidden: Any) -> list[dict[str, Any]]:
    touched = span_days(spans)
    store = open_lake(settings)
    keys = [k for day, day_keys in aggregate_days(store, window).items()
            if day in touched and day not in hidden for k in day_keys]
    span_where, span_params = spans_sql(spans)
    where = f"{span_where} AND series IN ('events', 'error_rate', ?)"
    params: list[Any] = [LATENCY_SERIES, LATENCY_SERIES, LATENCY_SERIES, *span_params,
                         LATENCY_SERIES]
    if wanted is not None:
        where += " AND list_contains(?, CAST(service AS VARCHAR))"
        params.append(wanted)
    return parquet_rows(store, keys, f"""
        SELECT window_start, CAST(service AS VARCHAR) AS service,
               max(CASE WHEN series = 'events' THEN avg END) AS events,
               max(CASE WHEN series = 'error_rate' THEN avg END) AS error_rate,
               max(CASE WHEN series = ? THEN p50 END) AS p50_ms,
               max(CASE WHEN series = ? THEN p95 END) AS p95_ms,
               max(CASE WHEN series = ? THEN p99 END) AS p99_ms
        FROM data WHERE {where}
        GROUP BY window_start, service ORDER BY window_start, service""", params)


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
    touched = days_between(start, end)
    gate = held_now(settings)
    hidden, held = gate.days(window), gate.of_days(touched, window)
    out: list[dict[str, Any]] = []
    spans: dict[str, list[Span]] = {}
    sources = []
    for size in (window,) if window is not None else WINDOWS:
        found = split(settings, "anomalies", size, start, end)
        sources.append(found.source)
        out += [r for r in unheld(found.rows, hidden)
                if service is None or r["service"] == service]
        if found.lake:
            spans[size] = found.lake
    if spans:
        out += _lake_anomalies(settings, spans, service, hidden)
    out.sort(key=lambda r: (r["window_start"], r["service"], r["series"], r["stat"],
                            r["window"], tuple(r["detectors"] or ())))
    return Shown(out, held, merged(sources))


def _lake_anomalies(settings: Settings, spans: dict[str, list[Span]], service: str | None,
                    hidden: Any) -> list[dict[str, Any]]:
    """The anomalies of each window size's spans, from the lake."""
    store = open_lake(settings)
    prefix = lake.anomalies_prefix()
    keys = []
    for size, of_size in spans.items():
        touched = span_days(of_size)
        keys += [k for k in anomaly_keys(store, size)
                 if (day := k[len(prefix):].split("/")[0].removeprefix("date=")) in touched
                 and day not in hidden]
    out = []
    for a in read_anomalies(store, keys):
        if service is not None and a.service != service:
            continue
        if not any(first <= a.window_start < last for first, last in spans.get(a.window, ())):
            continue
        # `onset` is not stored in md-anomalies (incidents keep it in their evidence)
        row = {k: plain(v) for k, v in a.to_dict().items() if k != "onset"}
        row["window_start"] = a.window_start
        out.append(row)
    return out
