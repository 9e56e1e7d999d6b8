"""Runs the ETL in process: discover raw files, transform them, publish, aggregate, record.

One `run_once()`:
1. finishes or discards a publish a killed run left half-done, and marks runs the state
   database still shows as `running` as failed (their files become pending again);
2. lists raw event files no succeeded run has read, and cuts them into runs per kind;
3. for each run: finds the event-time partitions the files touch, transforms the files merged
   with those partitions' rows (deduplicated by `event_id`), publishes the partitions by
   staging and swap, and records the run, its files and partitions in the state database;
4. recomputes the 1m / 5m / 1h aggregates of every day that changed;
5. compacts the partitions this pass wrote that hold `AUTO_SMALL_FILES` small files or more
   (`mad.etl.compact`); `compact()` (`mad etl compact`) does every partition of the lake.

The lake is a local folder or an S3 prefix; the runner sees it only through a
`mad.etl.publish.PartitionStore`: engines read raw files and existing partitions from the
lake's locations, write into a local stage, and the store publishes the stage (renames on a
local disk, upload + commit record + delete on S3). Every read of raw data or Parquet goes
through the configured engine (`mad.etl.engines.Engine`): the partitions probe, the quarantine
dedup, splitting and compacting files and the row counts of written partitions, so with Spark
the driver only lists and moves files. One process at a time works on a lake from one data
folder (`{data_dir}/etl.lock`), so `mad etl compact` waits for a running pass.

Transient failures (TransientError) are retried with backoff; anything else fails the run,
which is recorded with its error, and stops this pass. Every step can be killed and re-run:
a run's files are done only once its partitions are published.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mad import lake
from mad.config import Settings
from mad.errors import ConfigError, TransientError
from mad.etl import compact as comp
from mad.etl import parquet_lake as pq
from mad.etl.discover import RawFile, batches, pending
from mad.etl.engines import Engine
from mad.etl.publish import PartitionStore, open_partition_store
from mad.etl.quarantine import drop_known
from mad.etl.transforms.aggregates import HISTORY_WINDOWS, WINDOWS, aggregates_plan
from mad.etl.transforms.events import events_plan, partitions_plan
from mad.state import EtlLedger, Written, open_state

log = logging.getLogger(__name__)

PLAN = "events"
COMPACT = "compact"
QUARANTINE = lake.QUARANTINE_DATASET
AGGREGATES = lake.AGGREGATES_DATASET
KINDS = lake.KINDS
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
    compacted: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (f"{self.runs} runs over {self.files} raw files: {self.rows_in} lines in, "
                f"{self.rows_out} new events, {self.duplicates} duplicates, "
                f"{self.quarantined} quarantined, {self.late} late; aggregates recomputed "
                f"for {len(self.days_aggregated)} days")
        if self.compacted:
            text += f"; {len(self.compacted)} partitions compacted"
        return text


@dataclass
class Staged:
    """An events run's output, staged and counted, not yet published."""

    run_id: str
    dataset: str
    key: str  # names the run's appended quarantine files: a hash of its raw file list
    counts: dict[str, int]
    appended: list[str]  # the quarantine partitions it adds files to


class EtlRunner:
    def __init__(self, settings: Settings, engine: Engine | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.lake: PartitionStore = open_partition_store(settings)
        self.store = self.lake.store
        self.ledger = EtlLedger(open_state(settings.state_url))
        self.engine = engine or _engine(settings, self.lake)
        self.sleep = sleep

    def close(self) -> None:
        self.engine.close()

    def run_once(self) -> PassSummary:
        with self._exclusive():
            return self._pass()

    def backfill(self, start: float, end: float) -> int:
        """Make raw files of ingest hours in [start, end) pending again; returns how many.
        The next pass re-reads them: rows already in the lake count as duplicates, rows
        missing from it (a partition lost or deleted) are written again."""
        keys = [f.key for f in pending(self.store, set()) if start <= f.hour < end]
        return self.ledger.forget(PLAN, keys)

    def reprocess(self, dataset: str, partition: str) -> int:
        """Rebuild one event-time partition (e.g. `md-transformed-logs`,
        `date=2026-11-01/hour=07`) from the raw files of every run that wrote it: those files
        become pending, then the partition is removed; returns how many files."""
        if dataset not in lake.TRANSFORMED_DATASETS.values():
            raise ConfigError(f"unknown dataset '{dataset}' (known: "
                              f"{', '.join(lake.TRANSFORMED_DATASETS.values())})")
        keys = self.ledger.sources(PLAN, dataset, partition)
        if not keys:
            raise ConfigError(f"no run wrote {dataset}/{partition}; see `mad etl status`")
        with self._exclusive():
            forgotten = self.ledger.forget(PLAN, keys)  # first: a crash here loses nothing
            self.lake.remove(f"{dataset}/{partition}")
        return forgotten

    def compact(self, datasets: list[str] | None = None) -> list[str]:
        """Rewrite every partition of `datasets` (default: every dataset the ETL writes)
        whose files could be fewer or one of which is far above `etl.target_file_bytes`;
        returns the partitions rewritten."""
        known = list(lake.ETL_OUTPUTS)
        unknown = sorted(set(datasets or []) - set(known))
        if unknown:
            raise ConfigError(f"unknown dataset '{unknown[0]}' (known: {', '.join(known)})")
        with self._exclusive():
            self.lake.recover()
            parts: set[str] = set()
            for dataset in datasets or known:
                parts |= {k.rsplit("/", 1)[0] for k in self.lake.files(dataset + "/")}
            return self._compact(sorted(parts), lambda sizes: True)

    # -- one pass --------------------------------------------------------------------------

    def _pass(self) -> PassSummary:
        if self.lake.recover():
            log.warning("finished publishing partitions a killed run had committed")
        if self.ledger.abandon_running():
            log.warning("runs interrupted earlier are marked failed; their files are pending")
        summary = PassSummary()
        todo = pending(self.store, self.ledger.done_keys(PLAN))
        written: list[Written] = []
        cfg = self.settings.etl
        for kind in KINDS:
            of_kind = [f for f in todo if f.key.startswith(lake.raw_dataset(kind) + "/")]
            for batch in batches(of_kind, cfg.batch_bytes, cfg.batch_files):
                written += self._events_run(kind, batch, summary)
        dataset_names = {lake.transformed_dataset(k) for k in KINDS}
        days = {w.partition.split("/")[0].removeprefix("date=") for w in written
                if w.dataset in dataset_names}
        for day in sorted(days):
            self._aggregate(day)
        summary.days_aggregated = sorted(days)
        crowded = sorted({f"{w.dataset}/{w.partition}" for w in written
                          if w.files >= comp.AUTO_SMALL_FILES})
        summary.compacted = self._compact(
            crowded, lambda sizes: comp.small_files(sizes, cfg.target_file_bytes)
            >= comp.AUTO_SMALL_FILES)
        return summary

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold `{data_dir}/etl.lock`: passes, compaction and reprocess never overlap (a run
        merges the rows it read; a swap would drop a file added meanwhile)."""
        path = Path(self.settings.data_dir) / "etl.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- one events run --------------------------------------------------------------------

    def _events_run(self, kind: str, batch: list[RawFile],
                    summary: PassSummary) -> list[Written]:
        keys = [(f.key, f.bytes) for f in batch]
        attempts = self.settings.etl.retries + 1
        for attempt in range(1, attempts + 1):
            run_id = self.ledger.start(PLAN, self.engine.name, keys, attempt=attempt)
            try:
                if attempt > 1:  # undo or finish what the failed attempt left published
                    self.lake.recover()
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
            return written
        return []

    def _transform(self, kind: str, batch: list[RawFile],
                   run_id: str) -> tuple[dict[str, int], list[Written]]:
        staged = self.stage_events(kind, batch, run_id)
        replaced = self.lake.publish(run_id, {"events": staged.dataset},
                                     append={"quarantine": QUARANTINE}, key=staged.key)
        written = [self._measure(p) for p in replaced]
        written += [self._measure(p) for p in staged.appended]
        return {**staged.counts, "partitions": len(replaced)}, written

    def stage_events(self, kind: str, batch: list[RawFile], run_id: str) -> Staged:
        """Transform a batch into the run's stage: find the event-time partitions it touches,
        run the events plan over the batch merged with those partitions' rows, and split any
        file far above the target size. Nothing is published yet."""
        files = [self.lake.location(f.key) for f in batch]
        dataset = lake.transformed_dataset(kind)
        parts = sorted({(str(r["date"]), str(r["hour"])) for r in self.engine.query(
            partitions_plan(), files, {}, "partitions")})
        existing = [self.lake.location(k) for date, hour in parts
                    for k in sorted(self.lake.files(f"{dataset}/{lake.event_hour(date, hour)}/"))]
        stage = self.lake.stage(run_id)
        out = stage / "out"
        raw = self.engine.execute(events_plan(kind), files, {"existing": existing}, str(out))
        comp.split_large(self.engine, out / "events", self.settings.etl.target_file_bytes)
        drop_known(self.engine, self.lake, QUARANTINE, out / "quarantine", stage / "known")
        key = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:32]
        counts = {
            "rows_in": raw.get("count_in", 0), "rows_out": raw.get("count_new", 0),
            "duplicates": raw.get("count_duplicates", 0),
            "quarantined": raw.get("count_quarantined", 0), "late": raw.get("count_late", 0),
        }
        appended = [f"{QUARANTINE}/{rel.as_posix()}"
                    for rel in pq.partition_dirs(out / "quarantine")]
        return Staged(run_id, dataset, key, counts, appended)

    def _measure(self, partition: str) -> Written:
        dataset, _, rel = partition.partition("/")
        files = self.lake.files(partition.rstrip("/") + "/")
        rows = self.engine.count_rows([self.lake.location(k) for k in sorted(files)])
        return Written(dataset, rel, rows, len(files), sum(files.values()))

    # -- compaction ------------------------------------------------------------------------

    def _compact(self, partitions: list[str],
                 wanted: Callable[[list[int]], bool]) -> list[str]:
        """Compact each partition for which `wanted(file sizes)` holds, as one recorded run
        (plan `compact`, no raw inputs) per call; returns the partitions rewritten."""
        target = self.settings.etl.target_file_bytes
        todo = [p for p in partitions
                if wanted(list(self.lake.files(p + "/").values()))]
        if not todo:
            return []
        run_id = self.ledger.start(COMPACT, self.engine.name, [])
        done: list[str] = []
        try:
            for n, partition in enumerate(todo):
                if comp.compact_partition(self.lake, self.engine, partition, target,
                                          f"{run_id}-{n}"):
                    done.append(partition)
        except BaseException as err:
            self.ledger.fail(run_id, f"{type(err).__name__}: {err}")
            raise
        zero = dict.fromkeys(("rows_in", "rows_out", "duplicates", "quarantined", "late"), 0)
        self.ledger.succeed(run_id, {**zero, "partitions": len(done)},
                            [self._measure(p) for p in done])
        return done

    # -- aggregates ------------------------------------------------------------------------

    def _aggregate(self, day: str) -> None:
        first = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        history_days = [(first - timedelta(days=d)).strftime("%Y-%m-%d")
                        for d in range(HISTORY_DAYS, 0, -1)]
        events = self._day_files([day])
        history = self._day_files(history_days)
        for window in self.settings.etl.windows:
            run_id = f"aggregates-{window}-{day}-{uuid.uuid4().hex[:8]}"
            out = self.lake.stage(run_id) / "out"
            self.engine.execute(aggregates_plan(window), [],
                                {"events": events, "history": _recent(history, first, window)},
                                str(out))
            comp.split_large(self.engine, out / "aggregates",
                             self.settings.etl.target_file_bytes)
            self.lake.publish(run_id, {"aggregates": AGGREGATES})

    def _day_files(self, days: list[str]) -> list[str]:
        files: list[str] = []
        for kind in KINDS:
            for day in days:
                prefix = lake.day_prefix(lake.transformed_dataset(kind), day)
                files += [self.lake.location(k) for k in sorted(self.lake.files(prefix))]
        return files


def _recent(files: list[str], first: datetime, window: str) -> list[str]:
    """The history files a window's outlier score can reach: the event hours within twice
    `HISTORY_WINDOWS` windows before `first` (twice, so a series with quiet windows still
    finds its previous ones), at most `HISTORY_DAYS` days. For 1m windows that is one hour
    instead of two days of events."""
    reach = timedelta(seconds=min(2 * HISTORY_WINDOWS * WINDOWS[window], HISTORY_DAYS * 86400))
    start = (first - reach).replace(minute=0, second=0, microsecond=0)
    keep = []
    for f in files:
        found = _HOUR.search(f)
        if found and datetime.strptime(f"{found[1]} {found[2]}", "%Y-%m-%d %H").replace(
                tzinfo=UTC) >= start:
            keep.append(f)
    return keep


_HOUR = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


def _engine(settings: Settings, store: PartitionStore) -> Engine:
    """The configured engine; on an S3 lake it gets the endpoint and credentials, since it
    reads raw files and existing partitions straight from the bucket."""
    engine: Engine = settings.etl.engine.create(s3=store.credentials)
    return engine
