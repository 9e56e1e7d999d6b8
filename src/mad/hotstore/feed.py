"""`HotFeed`: keep the hot store equal to the lake over the hot horizon, hour by hour.

For each dataset (`aggregates`, `anomalies`), window size and day within the horizon, one
DuckDB query over the day's Parquet gives every hour's fingerprint (row count and an
order-free hash of the rows); the hours whose fingerprint differs from the one the hot store
holds, or that it does not hold, are read and replaced (one atomic replace per dataset and
window size), and hours older than the horizon are dropped. Hours within the horizon that
the lake has no rows for are held empty, so a read of them needs no lake either.

So the same call refills a wiped or restarted store, repairs a replace that failed, and
after a pass copies only what the pass changed. The ETL runs it after each pass for the days
it aggregated (`sync(["aggregates"], days)`), detection after each pass for the anomalies;
`mad store sync` runs it by hand. An unreachable hot store is reported (`SyncReport.error`,
the feed's `status`) and never fails the pass: the next one tries again.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import orjson

from mad import lake
from mad.config import Settings
from mad.errors import MadError
from mad.hotstore import hot_url, open_hot
from mad.hotstore.backends import COLUMNS, DATASETS, HOUR, HotStore, HotStoreDown, HourRows
from mad.stores import ObjectStore, lake_store

log = logging.getLogger(__name__)
T = TypeVar("T")
EMPTY = "0:0"
MEMORY = "512MB"
_SELECT = {
    "aggregates": ('epoch(window_start) AS ts, CAST(service AS VARCHAR) AS service, '
                   'CAST(series AS VARCHAR) AS series, "count", avg, min, max, stddev, p50, '
                   'p95, p99, outlier_score, outlier'),
    "anomalies": ('epoch(window_start) AS ts, CAST("window" AS VARCHAR) AS "window", '
                  'CAST(service AS VARCHAR) AS service, CAST(series AS VARCHAR) AS series, '
                  'CAST(stat AS VARCHAR) AS stat, score, CAST(severity AS VARCHAR) AS severity, '
                  'observed, expected, lower, upper, CAST(detectors AS VARCHAR[]) AS detectors'),
}


@dataclass
class SyncReport:
    """What one sync did: hours compared, hours and rows written, and the error that
    stopped it (None: the hot store equals the lake over what was compared)."""

    hours_checked: int = 0
    hours_written: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    error: str | None = None
    datasets: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.error:
            return f"hot store not updated: {self.error}"
        return (f"hot store: {self.hours_written} of {self.hours_checked} hours replaced "
                f"({self.rows_written} rows) in {self.seconds:.2f} s")


class HotFeed:
    def __init__(self, settings: Settings, hot: HotStore | None = None,
                 store: ObjectStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.hot = hot or open_hot(settings, create=True)
        self.store = store or lake_store(settings)
        self.clock = clock
        self.last: SyncReport | None = None
        self.failing_since: float | None = None

    @property
    def url(self) -> str:
        return hot_url(self.hot)

    def status(self) -> dict[str, Any]:
        """`backend`, `url`, `ok`, `error` and `failing_since` (epoch seconds) of the last
        sync, and its counts, for health pages and `/metrics`."""
        last = self.last or SyncReport()
        return {"backend": self.hot.name, "url": self.url, "ok": last.error is None,
                "error": last.error, "failing_since": self.failing_since,
                "hours_written": last.hours_written, "rows_written": last.rows_written}

    def sync(self, datasets: Sequence[str] = DATASETS,
             days: Iterable[str] | None = None) -> SyncReport:
        """Bring `datasets` up to date for every day of the horizon (or only `days` of it,
        plus any day whose hours the store is missing); never raises for the hot store or
        an unreadable lake file: the reason is in the report."""
        report = SyncReport(datasets=list(datasets))
        began = time.monotonic()
        try:
            now = self.clock()
            for dataset in datasets:
                for window in self._windows(dataset, now):
                    self._sync(dataset, window, now, None if days is None else set(days),
                               report)
        except (HotStoreDown, MadError, OSError, duckdb.Error) as err:
            report.error = _line(err)
        report.seconds = time.monotonic() - began
        self._record(report)
        return report

    def close(self) -> None:
        self.hot.close()

    # -- one dataset and window ------------------------------------------------------------

    def _windows(self, dataset: str, now: float) -> list[str]:
        if dataset == "aggregates":
            return list(self.settings.etl.windows)
        found: set[str] = set()
        for day in self._days(now):
            for key in self.store.list(f"{lake.ANOMALIES_DATASET}/date={day}/"):
                window = lake.anomalies_window(key)
                if window is not None:
                    found.add(window)
        return sorted(found)

    def _keep_from(self, now: float) -> int:
        return int((now - self.settings.store.horizon_h * HOUR) // HOUR * HOUR)

    def _days(self, now: float) -> list[str]:
        first = datetime.fromtimestamp(self._keep_from(now), UTC).date()
        last = datetime.fromtimestamp(now + HOUR, UTC).date()
        return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]

    def _sync(self, dataset: str, window: str, now: float, days: set[str] | None,
              report: SyncReport) -> None:
        keep_from = self._keep_from(now)
        held = self.hot.hours(dataset, window)
        replaced: list[HourRows] = []
        for day in self._days(now):
            expected = _expected_hours(day, keep_from, now)
            if days is not None and day not in days and all(h in held for h in expected):
                continue
            replaced += self._day(dataset, window, day, keep_from, expected, held, report)
        if replaced or any(h < keep_from for h in held):
            self.hot.replace(dataset, window, replaced, keep_from)
            report.hours_written += len(replaced)
            report.rows_written += sum(len(h.rows) for h in replaced)

    def _day(self, dataset: str, window: str, day: str, keep_from: int, expected: list[int],
             held: dict[int, str], report: SyncReport) -> list[HourRows]:
        keys = self._files(dataset, window, day)
        with _Parquet(self.store, keys) as data:
            prints = dict.fromkeys(expected, EMPTY)
            if keys:
                prints.update({int(h): f"{n}:{fp}" for h, n, fp in data.rows(
                    "SELECT CAST(epoch(date_trunc('hour', window_start)) AS BIGINT) AS h, "
                    f"count(*) AS n, bit_xor(hash({_columns(dataset)})) AS fp FROM data "
                    "WHERE window_start >= ? GROUP BY 1",
                    [datetime.fromtimestamp(keep_from, UTC).replace(tzinfo=None)])})
            report.hours_checked += len(prints)
            changed = sorted(h for h, fp in prints.items() if held.get(h) != fp)
            out = {h: HourRows(h, prints[h]) for h in changed}
            wanted = [h for h in changed if prints[h] != EMPTY]
            if wanted:
                for row in data.rows(
                        f"SELECT {_SELECT[dataset]} FROM data WHERE list_contains(?, CAST("
                        "epoch(date_trunc('hour', window_start)) AS BIGINT)) ORDER BY 1",
                        [wanted]):
                    ts = float(row[0])
                    key = f"{row[1]}/{row[2]}" if dataset == "aggregates" else ""
                    out[int(ts // HOUR * HOUR)].rows.append((key, ts, orjson.dumps(row)))
        return [out[h] for h in changed]

    def _files(self, dataset: str, window: str, day: str) -> list[str]:
        if dataset == "anomalies":  # one file, or one per detection shard
            folder = f"{lake.anomalies_prefix()}date={day}/"
            return sorted(k for k in self.store.list(folder)
                          if lake.anomalies_window(k) == window)
        prefix = f"{lake.aggregates_prefix(window)}date={day}/"
        return sorted(k for k in self.store.list(prefix)
                      if k.endswith(".parquet") and "/" not in k[len(prefix):])

    def _record(self, report: SyncReport) -> None:
        if report.error is None:
            if self.failing_since is not None:
                log.warning("hot store %s reachable again: refilled (%s)", self.url,
                            report.line())
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = self.clock()
            log.warning("%s; reads use the lake until it is back", report.line())
        self.last = report


def _expected_hours(day: str, keep_from: int, now: float) -> list[int]:
    """The hours of `day` within the horizon, up to the current hour."""
    start = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())
    first, last = max(start, keep_from), min(start + 86400, int(now // HOUR * HOUR) + HOUR)
    return list(range(first, last, HOUR)) if last > first else []


def _columns(dataset: str) -> str:
    return ", ".join(f'"{c}"' for c in COLUMNS[dataset])


def _line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class _Parquet:
    """Parquet objects fetched into a temporary folder, as the view `data` of a DuckDB
    connection (none are read when `keys` is empty)."""

    def __init__(self, store: ObjectStore, keys: Sequence[str]) -> None:
        self.store, self.keys = store, list(keys)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> _Parquet:
        if self.keys:
            self._tmp = tempfile.TemporaryDirectory(prefix="mad-hot-")
            paths = []
            for n, key in enumerate(self.keys):
                path = Path(self._tmp.name) / f"{n}.parquet"
                path.write_bytes(self.store.get(key))
                paths.append("'" + str(path).replace("'", "''") + "'")
            self._con = duckdb.connect(config={"memory_limit": MEMORY, "threads": 1})
            self._con.execute("SET TimeZone = 'UTC'")
            self._con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet([{', '.join(paths)}]"
                              ", union_by_name=true, hive_partitioning=false)")
        return self

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        assert self._con is not None
        return self._con.execute(sql, list(params)).fetchall()

    def __exit__(self, *exc: object) -> None:
        if self._con is not None:
            self._con.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def open_feed(settings: Settings) -> HotFeed | None:
    """The feed of the configured hot store (None with `store.enabled: false`); building it
    reaches no server."""
    return HotFeed(settings) if settings.store.enabled else None


def then_sync(feed: HotFeed | None, dataset: str, run: Callable[[], T],
              days_of: Callable[[T], Iterable[str]] | None = None) -> T:
    """`run()` (one ETL or detection pass), then `feed.sync([dataset])` for the days
    `days_of(result)` names (every day of the horizon after a pass that raised, which may
    have published part of its work); the pass's own result or error is returned as is."""
    try:
        result = run()
    except Exception:
        if feed is not None:
            feed.sync([dataset])
        raise
    if feed is not None:
        report = feed.sync([dataset], None if days_of is None else list(days_of(result)))
        if report.error is None and report.hours_written:
            log.info("%s", report.line())
    return result
