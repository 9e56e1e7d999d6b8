"""Detection's edge to the lake: read published aggregates, write `md-anomalies`.

Goes through the lake's object store (`mad.stores.lake_store`), so it reads and writes a local
folder or S3 alike: a Parquet object is fetched whole into a temporary file that DuckDB reads,
and written by DuckDB to a temporary file that is put whole (a local put is a rename, so
readers see the old or the new file, never half of one).

Layout:
- in: `md-aggregates/window={1m|5m|1h}/date=YYYY-MM-DD/*.parquet` (the ETL's output);
- out: `md-anomalies/date=YYYY-MM-DD/part-{window}.parquet`, every anomaly of that day and
  window size (with `detect.shards` > 1, `part-{window}-s{k}of{n}.parquet`: those of shard
  k). A batch REPLACES the anomalies of the series and window range it scored
  (`write_anomalies(spans=...)`), so a batch replayed after a crash overwrites its own rows
  instead of adding them twice.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from mad import lake
from mad.detect.model import Anomaly
from mad.detect.series import WindowRow
from mad.errors import TerminalError
from mad.stores import ObjectStore

STATS = ("count", "avg", "min", "max", "stddev", "p50", "p95", "p99")
ANOMALY_COLUMNS = ("CAST(window_start AS TIMESTAMP) AS window_start, "
                   "CAST(\"window\" AS VARCHAR) AS \"window\", CAST(service AS VARCHAR) AS "
                   "service, CAST(series AS VARCHAR) AS series, CAST(stat AS VARCHAR) AS stat, "
                   "score, CAST(severity AS VARCHAR) AS severity, observed, expected, lower, "
                   "upper, CAST(detectors AS VARCHAR[]) AS detectors")

Span = tuple[datetime, datetime]


class UnreadableAggregates(TerminalError):
    """An aggregates file that is not Parquet or lacks the key columns."""


class UnreadableAnomalies(TerminalError):
    """An `md-anomalies` file that is not Parquet (or not one this version wrote)."""


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


@dataclass
class Windows:
    """Rows read from a set of aggregate files, one per window start x service x series."""

    rows: list[WindowRow] = field(default_factory=list)
    duplicates: list[WindowRow] = field(default_factory=list)  # dropped: a row for the
    # same window start, service and series was read before (the first one is kept)
    bad_rows: int = 0  # rows without a window start, service or series


def aggregate_days(store: ObjectStore, window: str) -> dict[str, list[str]]:
    """The Parquet keys of each `date=` partition of one window size, by day."""
    prefix = lake.aggregates_prefix(window)
    days: dict[str, list[str]] = {}
    for key in store.list(prefix):
        parts = key[len(prefix):].split("/")
        if len(parts) == 2 and parts[0].startswith("date=") and parts[1].endswith(".parquet"):
            days.setdefault(parts[0].removeprefix("date="), []).append(key)
    return dict(sorted(days.items()))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fetch(store: ObjectStore, keys: Iterable[str], folder: Path) -> list[str]:
    paths = []
    for n, key in enumerate(keys):
        path = folder / f"{n}.parquet"
        path.write_bytes(store.get(key))
        paths.append(str(path))
    return paths


def read_windows(store: ObjectStore, keys: list[str]) -> Windows:
    """Every aggregate row of `keys`, ordered by window start, service, series; duplicates
    (same window, service and series) keep the first row in key order."""
    out = Windows()
    if not keys:
        return out
    with tempfile.TemporaryDirectory(prefix="mad-detect-") as tmp:
        paths = _fetch(store, keys, Path(tmp))
        con = duckdb.connect()
        try:
            source = (f"read_parquet({paths!r}, union_by_name=true, hive_partitioning=false, "
                      "filename=true, file_row_number=true)")
            try:
                present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}")
                           .fetchall()}
                missing = {"window_start", "service", "series"} - present
                if missing:
                    raise UnreadableAggregates(f"aggregates {keys} lack {sorted(missing)}")
                stats = ", ".join(f'TRY_CAST("{s}" AS DOUBLE)' if s in present else "NULL"
                                  for s in STATS)
                rows = con.execute(
                    f"SELECT window_start, CAST(service AS VARCHAR), "
                    f"CAST(series AS VARCHAR), {stats} FROM {source} ORDER BY 1, 2, 3, "
                    "list_position(?, filename), file_row_number", [paths]).fetchall()
            except duckdb.Error as err:
                raise UnreadableAggregates(f"cannot read aggregates {keys}: {err}") from None
        finally:
            con.close()
    seen: set[tuple[datetime, str, str]] = set()
    for row in rows:
        start, service, series = row[0], row[1], row[2]
        if not isinstance(start, datetime) or service is None or series is None:
            out.bad_rows += 1
            continue
        values = {s: (math.nan if v is None else float(v)) for s, v in zip(STATS, row[3:11],
                                                                         strict=True)}
        item = WindowRow(str(service), str(series), _utc(start), values)
        ident = (item.window_start, item.service, item.series)
        if ident in seen:
            out.duplicates.append(item)
            continue
        seen.add(ident)
        out.rows.append(item)
    return out


def _aggregate_rows(store: ObjectStore, keys: list[str], columns: str,
                    tail: str = "") -> list[tuple[Any, ...]]:
    """`SELECT columns FROM <the aggregate files keys> tail`, as rows."""
    with tempfile.TemporaryDirectory(prefix="mad-detect-") as tmp:
        paths = _fetch(store, keys, Path(tmp))
        con = duckdb.connect()  # its own: a failed statement must not poison later reads
        try:
            return con.sql(f"SELECT {columns} FROM read_parquet({paths!r}, "
                           f"union_by_name=true, hive_partitioning=false) {tail}").fetchall()
        except duckdb.Error as err:
            raise UnreadableAggregates(f"cannot read aggregates {keys}: "
                                       f"{_first_line(err)}") from None
        finally:
            con.close()


def newest_start(store: ObjectStore, keys: list[str]) -> datetime | None:
    """The latest window start in `keys` (None when they hold no rows)."""
    if not keys:
        return None
    rows = _aggregate_rows(store, keys, "max(window_start)")
    return None if not rows or rows[0][0] is None else _utc(rows[0][0])


def newest_by_service(store: ObjectStore, keys: list[str]) -> dict[str, datetime]:
    """The latest window start of each service in `keys` (rows without a service or window
    start are left out)."""
    if not keys:
        return {}
    rows = _aggregate_rows(store, keys, "CAST(service AS VARCHAR), max(window_start)",
                           "WHERE service IS NOT NULL AND window_start IS NOT NULL GROUP BY 1")
    return {str(service): _utc(newest) for service, newest in rows
            if isinstance(newest, datetime)}


def read_anomalies(store: ObjectStore, keys: list[str]) -> list[Anomaly]:
    """The anomalies stored in `keys` (files of `md-anomalies`)."""
    if not keys:
        return []
    with tempfile.TemporaryDirectory(prefix="mad-detect-") as tmp:
        paths = _fetch(store, keys, Path(tmp))
        con = duckdb.connect()  # its own: a failed statement must not poison later reads
        try:
            rows = con.sql(f"SELECT window_start, \"window\", service, series, stat, score, "
                           f"severity, observed, expected, lower, upper, detectors FROM "
                           f"read_parquet({paths!r}, hive_partitioning=false)").fetchall()
        except duckdb.Error as err:
            raise UnreadableAnomalies(
                f"anomalies file {', '.join(keys)} is unreadable ({_first_line(err)}); move "
                "it aside to go on (its anomalies are lost; incidents keep their counts)"
            ) from None
        finally:
            con.close()
    return [Anomaly(service=r[2], series=r[3], stat=r[4], window=r[1],
                    window_start=_utc(r[0]), score=_num(r[5]), severity=r[6],
                    observed=_num(r[7]), expected=_num(r[8]), lower=_num(r[9]),
                    upper=_num(r[10]), detectors=tuple(r[11] or ())) for r in rows]


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _days(span: Span) -> list[str]:
    first: date = span[0].date()
    return [(first + timedelta(days=n)).isoformat()
            for n in range((span[1].date() - first).days + 1)]


def write_anomalies(store: ObjectStore, window: str, anomalies: list[Anomaly],
                    spans: Mapping[tuple[str, str], Span], shard: str | None = None) -> int:
    """Replace the anomalies of each `(service, series)` within its `[first, last]` window
    span by `anomalies`, in the files of `shard` (a detection shard's name) or of the whole
    window size; returns how many files were written."""
    by_day: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_day.setdefault(a.window_start.date().isoformat(), []).append(a)
    days = set(by_day)
    for span in spans.values():
        days.update(_days(span))
    written = 0
    for day in sorted(days):
        key = lake.anomalies_key(day, window, shard)
        old = read_anomalies(store, [key]) if store.exists(key) else []
        keep = [a for a in old if not _replaced(a, window, spans)]
        rows = keep + by_day.get(day, [])
        if not old and not rows:
            continue
        rows.sort(key=lambda a: (a.window_start, a.service, a.series, a.stat, a.detectors))
        store.put(key, _parquet(rows))
        written += 1
    return written


def _replaced(a: Anomaly, window: str, spans: Mapping[tuple[str, str], Span]) -> bool:
    span = spans.get((a.service, a.series))
    return a.window == window and span is not None and span[0] <= a.window_start <= span[1]


def _parquet(rows: list[Anomaly]) -> bytes:
    """The anomalies as one Parquet file (NaN values are stored as NULL)."""
    detectors = np.empty(len(rows), dtype=object)
    for i, a in enumerate(rows):
        detectors[i] = list(a.detectors)
    columns: dict[str, Any] = {
        "window_start": np.array([a.window_start.astimezone(UTC).replace(tzinfo=None)
                                  for a in rows], dtype="datetime64[us]"),
        "window": np.array([a.window for a in rows], dtype=object),
        "service": np.array([a.service for a in rows], dtype=object),
        "series": np.array([a.series for a in rows], dtype=object),
        "stat": np.array([a.stat for a in rows], dtype=object),
        **{name: np.array([float(getattr(a, name)) for a in rows], dtype=float)
           for name in ("score", "observed", "expected", "lower", "upper")},
        "severity": np.array([a.severity for a in rows], dtype=object),
        "detectors": detectors,
    }
    with tempfile.TemporaryDirectory(prefix="mad-detect-") as tmp:
        con = duckdb.connect()
        try:
            con.register("rows", columns)
            path = Path(tmp) / "anomalies.parquet"
            con.execute(f"COPY (SELECT {ANOMALY_COLUMNS} FROM rows) TO '{path}' "
                        "(FORMAT parquet, COMPRESSION snappy)")
        finally:
            con.close()
        return path.read_bytes()
