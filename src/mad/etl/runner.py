"""Runs the ETL in process: discover raw files, transform them, publish, aggregate, record.

One `run_once()`:
1. finishes or discards a publish a killed run left half-done, and marks runs the state
   database still shows as `running` as failed (their files become pending again);
2. lists raw event files no succeeded run has read, and cuts them into runs per kind;
3. for each run: finds the event-time partitions the files touch, transforms the files merged
   with those partitions' rows (deduplicated by `event_id`), publishes the partitions by
   staging and swap, and records the run, its files and partitions in the state database;
4. recomputes the 1m / 5m / 1h aggregates of every day that changed.

Transient failures (TransientError) are retried with backoff; anything else fails the run,
which is recorded with its error, and stops this pass. Every step can be killed and re-run:
a run's files are done only once its partitions are published.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from mad import lake
from mad.config import Settings
from mad.errors import ConfigError, TransientError
from mad.etl import parquet_lake as pq
from mad.etl.discover import RawFile, batches, pending
from mad.etl.engines import Engine, open_engine
from mad.etl.transforms.aggregates import aggregates_plan
from mad.etl.transforms.events import events_plan, partitions_plan
from mad.state import EtlLedger, Written, open_state

log = logging.getLogger(__name__)

PLAN = "events"
QUARANTINE = "md-quarantine"
AGGREGATES = "md-aggregates"
KINDS = ("log", "metric", "apm")
HISTORY_DAYS = 2  # days of events before a recomputed day, for the outlier score


@dataclass
class PassSummary:
    runs: int = 0
    files: int = 0
    rows_in: int = 0
    rows_out: int = 0
    duplicates: int = 0
    quarantined: int = 0
    late: int = 0
    days_aggregated: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.runs} runs over {self.files} raw files: {self.rows_in} lines in, "
                f"{self.rows_out} new events, {self.duplicates} duplicates, "
                f"{self.quarantined} quarantined, {self.late} late; aggregates recomputed "
                f"for {len(self.days_aggregated)} days")


class EtlRunner:
    def __init__(self, settings: Settings, engine: Engine | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        url = settings.lake_url
        if "://" in url and not url.startswith("file://"):
            raise ConfigError(f"the ETL publishes to a local lake folder; {url} is not one")
        self.lake = Path(url.removeprefix("file://"))
        self.settings = settings
        self.store = lake.open_store(str(self.lake), settings.aws)
        self.ledger = EtlLedger(open_state(settings.state_url))
        self.engine = engine or _engine(settings)
        self.sleep = sleep

    def close(self) -> None:
        self.engine.close()

    def run_once(self) -> PassSummary:
        targets = {"events": "", "aggregates": AGGREGATES}
        for kind in KINDS:
            pq.recover(self.lake, {**targets, "events": pq.transformed_dataset(kind)})
        if self.ledger.abandon_running():
            log.warning("runs interrupted earlier are marked failed; their files are pending")
        summary = PassSummary()
        todo = pending(self.store, self.ledger.done_keys(PLAN))
        days: set[str] = set()
        cfg = self.settings.etl
        for kind in KINDS:
            of_kind = [f for f in todo if f.key.startswith(lake.raw_dataset(kind) + "/")]
            for batch in batches(of_kind, cfg.batch_bytes, cfg.batch_files):
                days |= self._events_run(kind, batch, summary)
        for day in sorted(days):
            self._aggregate(day)
        summary.days_aggregated = sorted(days)
        return summary

    def backfill(self, start: float, end: float) -> int:
        """Make raw files of ingest hours in [start, end) pending again; returns how many.
        The next pass re-reads them: rows already in the lake count as duplicates, rows
        missing from it (a partition lost or deleted) are written again."""
        keys = [f.key for f in pending(self.store, set()) if start <= f.hour < end]
        return self.ledger.forget(PLAN, keys)

    def reprocess(self, dataset: str, partition: str) -> int:
        """Rebuild one event-time partition (e.g. `md-transformed-logs`,
        `date=2026-11-01/hour=07`) from the raw files of every run that wrote it: the
        partition is removed and those files become pending; returns how many files."""
        if dataset not in {pq.transformed_dataset(k) for k in KINDS}:
            raise ConfigError(f"unknown dataset '{dataset}' (known: "
                              f"{', '.join(pq.transformed_dataset(k) for k in KINDS)})")
        keys = self.ledger.sources(PLAN, dataset, partition)
        if not keys:
            raise ConfigError(f"no run wrote {dataset}/{partition}; see `mad etl status`")
        shutil.rmtree(self.lake / dataset / partition, ignore_errors=True)
        return self.ledger.forget(PLAN, keys)

    # -- one events run --------------------------------------------------------------------

    def _events_run(self, kind: str, batch: list[RawFile], summary: PassSummary) -> set[str]:
        keys = [(f.key, f.bytes) for f in batch]
        attempts = self.settings.etl.retries + 1
        for attempt in range(1, attempts + 1):
            run_id = self.ledger.start(PLAN, self.engine.name, keys, attempt=attempt)
            try:
                counts, written = self._transform(kind, batch, run_id)
            except TransientError as err:
                self.ledger.fail(run_id, f"transient: {err}")
                if attempt == attempts:
                    raise
                delay = min(2.0 ** attempt, 60.0)
                log.warning("run %s failed (%s); retrying in %.0f s", run_id, err, delay)
                self.sleep(delay)
                continue
            except BaseException as err:
                self.ledger.fail(run_id, f"{type(err).__name__}: {err}")
                raise
            self.ledger.succeed(run_id, counts, written)
            summary.runs += 1
            summary.files += len(batch)
            for name in ("rows_in", "rows_out", "duplicates", "quarantined", "late"):
                setattr(summary, name, getattr(summary, name) + counts[name])
            return {w.partition.split("/")[0].removeprefix("date=") for w in written
                    if w.dataset == pq.transformed_dataset(kind)}
        return set()

    def _transform(self, kind: str, batch: list[RawFile],
                   run_id: str) -> tuple[dict[str, int], list[Written]]:
        files = [str(self.lake / f.key) for f in batch]
        dataset = pq.transformed_dataset(kind)
        probe = pq.staging_dir(self.lake, f"probe-{run_id}")
        try:
            self.engine.execute(partitions_plan(), files, {}, str(probe))
            parts = [(str(r[0]), str(r[1])) for r in duckdb.sql(
                f"SELECT DISTINCT date, hour FROM read_parquet('{probe}/partitions/**/*.parquet')"
            ).fetchall()] if any(probe.rglob("*.parquet")) else []
        finally:
            shutil.rmtree(probe, ignore_errors=True)
        existing = pq.partition_files(self.lake, dataset, parts)
        out = pq.staging_dir(self.lake, run_id) / "out"
        raw = self.engine.execute(events_plan(kind), files, {"existing": existing}, str(out))
        key = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:32]
        replaced = pq.publish(self.lake, run_id, {"events": dataset},
                              append={"quarantine": QUARANTINE}, key=key)
        counts = {
            "rows_in": raw.get("count_in", 0), "rows_out": raw.get("count_new", 0),
            "duplicates": raw.get("count_duplicates", 0),
            "quarantined": raw.get("count_quarantined", 0), "late": raw.get("count_late", 0),
            "partitions": len(replaced),
        }
        return counts, [self._measure(p) for p in replaced]

    def _measure(self, partition: str) -> Written:
        dataset, _, rel = partition.partition("/")
        files = sorted((self.lake / partition).glob("*.parquet"))
        rows = 0
        if files:
            listing = ", ".join(f"'{f}'" for f in files)
            rows = int(duckdb.sql(
                f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata([{listing}])"
            ).fetchone()[0])  # type: ignore[index]
        return Written(dataset, rel, rows, len(files), sum(f.stat().st_size for f in files))

    # -- aggregates ------------------------------------------------------------------------

    def _aggregate(self, day: str) -> None:
        first = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        history_days = [(first - timedelta(days=d)).strftime("%Y-%m-%d")
                        for d in range(HISTORY_DAYS, 0, -1)]
        events = self._day_files([day])
        history = self._day_files(history_days)
        for window in self.settings.etl.windows:
            run_id = f"aggregates-{window}-{day}-{uuid.uuid4().hex[:8]}"
            out = pq.staging_dir(self.lake, run_id) / "out"
            self.engine.execute(aggregates_plan(window), [],
                                {"events": events, "history": history}, str(out))
            pq.publish(self.lake, run_id, {"aggregates": AGGREGATES})

    def _day_files(self, days: list[str]) -> list[str]:
        files: list[str] = []
        for kind in KINDS:
            root = self.lake / pq.transformed_dataset(kind)
            for day in days:
                files += sorted(str(p) for p in (root / f"date={day}").glob("*/*.parquet"))
        return files


def _engine(settings: Settings) -> Engine:
    cfg = settings.etl
    if cfg.engine == "spark":
        return open_engine("spark", master=cfg.spark_master, jars=tuple(cfg.spark_jars))
    return open_engine("duckdb", memory_limit=cfg.duckdb_memory_limit,
                       threads=cfg.duckdb_threads)
