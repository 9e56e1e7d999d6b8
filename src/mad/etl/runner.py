"""Runs the ETL in process: discover raw files, transform them, publish, aggregate, record.

One `run_once()`:
1. sweeps the engine's scratch folders that killed processes left (DuckDB spill folders),
   finishes or discards a publish a killed run left half-done (deleting every stage), and
   marks runs the state database still shows as `running` as failed (their files become
   pending again);
2. lists raw event files no succeeded run has read, and cuts them into runs per kind;
3. for each run: sets aside raw files that cannot be read whole (`mad.etl.screen`), finds
   the event-time partitions the files touch, transforms the files merged with those
   partitions' rows (deduplicated by `event_id`, checked against the ids of the partitions
   within the dedup horizon, `mad.etl.horizon`), publishes the partitions by staging and
   swap, and records the run, its files and partitions in the state database;
4. recomputes the 1m / 5m / 1h aggregates of every day the state database shows as due
   (`mad.etl.aggregate`): its events changed after its aggregates were last published; with
   them, the day's source clocks (how far each host's events have reached: detection's
   watermark, `mad.state.event_clocks`);
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
which is recorded with a one-line reason (`mad.etl.failures`), and the pass goes on with the
other datasets (the rest of the failed run's dataset waits, so its files stay in ingest
order) and the aggregates; a full disk stops the pass (every write would fail alike). A
pass in which runs failed ends with `PassFailed`: one line, a non-zero exit code. Every step
can be killed and re-run: a run's files are done only once its partitions are published.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from mad import lake
from mad.config import Settings
from mad.errors import ConfigError
from mad.etl import aggregate as agg
from mad.etl import compact as comp
from mad.etl import failures
from mad.etl import parquet_lake as pq
from mad.etl import retention as keep
from mad.etl.discover import RawFile, batches, pending
from mad.etl.engines import Engine
from mad.etl.horizon import horizon_keys
from mad.etl.publish import PartitionStore, open_partition_store
from mad.etl.quarantine import drop_known
from mad.etl.retention import RetentionReport
from mad.etl.screen import Screen, Screened
from mad.etl.transforms.events import events_plan, partitions_plan
from mad.quality.auditor import Audit, Auditor, StagedRun, StreamFacts
from mad.quality.model import RUN
from mad.state import (
    EtlLedger,
    EventClocks,
    IngestAcks,
    QualityStore,
    RawFileLedger,
    UnreadableFiles,
    Written,
    open_state,
)
from mad.stores import ExpiresByRule
from mad.words import plural

log = logging.getLogger(__name__)

PLAN = "events"
COMPACT = "compact"
AGGREGATE = "aggregates"
QUARANTINE = lake.QUARANTINE_DATASET
AGGREGATES = lake.AGGREGATES_DATASET
KINDS = lake.KINDS
COUNTED = ("rows_in", "rows_out", "duplicates", "quarantined", "late", "reused", "unreadable")


@dataclass
class PassSummary:
    runs: int = 0
    files: int = 0
    rows_in: int = 0
    rows_out: int = 0
    duplicates: int = 0
    quarantined: int = 0
    late: int = 0
    reused: int = 0
    unreadable: int = 0
    waiting: int = 0  # raw files left for a later pass (cannot be read whole yet)
    days_aggregated: list[str] = field(default_factory=list)
    compacted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per failed run
    held: list[str] = field(default_factory=list)  # partitions the quality gate now holds
    missing: list[str] = field(default_factory=list)  # lake data the ledgers miss (lost)
    transient: bool = True  # every failure may pass by itself
    stopped: bool = False  # the disk is full: the rest of the pass was not tried

    def line(self) -> str:
        text = (f"{plural(self.runs, 'run')} over {plural(self.files, 'raw file')}: "
                f"{plural(self.rows_in, 'line')} in, {plural(self.rows_out, 'new event')}, "
                f"{plural(self.duplicates, 'duplicate')}, {self.quarantined} quarantined, "
                f"{self.late} late; aggregates recomputed for "
                f"{plural(len(self.days_aggregated), 'day')}")
        if self.reused:
            text += f"; {plural(self.reused, 'reused event id')} quarantined"
        if self.unreadable or self.waiting:
            text += (f"; {plural(self.unreadable, 'unreadable raw file')} quarantined whole, "
                     f"{self.waiting} left for the next pass")
        if self.compacted:
            text += f"; {plural(len(self.compacted), 'partition')} compacted"
        if self.failed:
            text += f"; {plural(len(self.failed), 'run')} failed"
        if self.held:
            text += (f"; the quality gate holds {plural(len(self.held), 'partition')} "
                     "(mad quality report)")
        if self.missing:
            text += f"; reconciliation failed: {'; '.join(self.missing[:3])}"
        return text

    def add(self, counts: dict[str, int]) -> None:
        for name in COUNTED:
            setattr(self, name, getattr(self, name) + counts.get(name, 0))

    def fail(self, reason: failures.Blame, run_id: str) -> None:
        self.failed.append(f"run {run_id}: {reason.reason}")
        self.transient = self.transient and reason.transient
        self.stopped = self.stopped or reason.disk_full


@dataclass
class Staged:
    """An events run's output, staged and counted, not yet published."""

    run_id: str
    dataset: str
    key: str  # names the run's appended quarantine files: a hash of its raw file list
    counts: dict[str, int]
    appended: list[str]  # the quarantine partitions it adds files to
    engine_counts: dict[str, int] = field(default_factory=dict)  # every count_* step's
    replaced_bytes: int = 0  # Parquet bytes of the lake partitions the stage replaces


@dataclass
class Reading:
    """The files a step is reading (location -> lake key), so that a failure naming one of
    them can say which (`mad.etl.failures.blame`)."""

    raw: dict[str, str] = field(default_factory=dict)
    parquet: dict[str, str] = field(default_factory=dict)


class EtlRunner:
    def __init__(self, settings: Settings, engine: Engine | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.lake: PartitionStore = open_partition_store(settings)
        self.store = self.lake.store
        state = open_state(settings.state_url)
        self.state = state
        self.ledger = EtlLedger(state)
        self.engine = engine or _engine(settings, self.lake)
        self.screen = Screen(self.engine, self.lake, UnreadableFiles(state),
                             settings.etl.unreadable_attempts)
        self.sleep = sleep
        self.reading = Reading()
        self.auditor = Auditor(settings, self.engine, state) if settings.quality.enabled \
            else None
        self.audits: list[Audit] = []  # this pass's

    def run_once(self) -> PassSummary:
        """One pass (see the module docstring); raises `PassFailed` (one line) after a pass
        in which runs failed, having done all it could."""
        with self._exclusive():
            summary = self._pass()
        if summary.failed:
            log.warning("ETL pass: %s", summary.line())
            raise failures.PassFailed(summary.failed, summary.transient)
        return summary

    def close(self) -> None:
        self.engine.close()

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

    def retention(self, apply: bool = False, today: date | None = None) -> RetentionReport:
        """The partitions past `lake.retention` (`mad.etl.retention`); with `apply`, the
        ledgers forget them and their files are deleted, under the ETL's lock."""
        datasets = [*lake.RAW_DATASETS.values(), lake.ERRORS_DATASET, *lake.ETL_OUTPUTS,
                    lake.ANOMALIES_DATASET]
        with self._exclusive():
            listing = {ds: self.store.sizes(ds + "/") for ds in datasets}
            expired = keep.plan(listing, self.settings.lake.retention,
                                today or datetime.now(UTC).date())
            report = keep.RetentionReport()
            read = self.ledger.done_keys(PLAN)
            for entry in expired:
                if entry.dataset in lake.RAW_DATASETS.values():
                    unread = [k for k in entry.files if k not in read]
                    report.kept_unread += unread
                    entry.files = {k: n for k, n in entry.files.items() if k not in unread}
            report.expired = [e for e in expired if e.files]
            if not apply:
                return report
            if isinstance(self.store, ExpiresByRule):  # the store expires objects itself
                report.rules = keep.lifecycle_rules(self.settings.lake.retention, datasets)
                self.store.set_expiry(report.rules)
                report.applied = True
                log.info("%s", report.line())
                return report
            self._forget(report.expired)
            for entry in report.expired:
                for key in sorted(entry.files):
                    self.store.delete(key)
            report.applied = True
        log.info("%s", report.line())
        return report

    def _forget(self, expired: list[keep.Expired]) -> None:
        """The ledgers forget what retention is about to delete (before it is deleted)."""
        raw = [k for e in expired if e.dataset in (*lake.RAW_DATASETS.values(),
                                                   lake.ERRORS_DATASET) for k in e.files]
        RawFileLedger(self.state, consumer="etl").forget(raw)
        self.ledger.drop_partitions((e.dataset, e.partition) for e in expired)
        EventClocks(self.state).forget(e.day for e in expired if e.dataset == AGGREGATES)
        QualityStore(self.state).forget((e.dataset, e.partition) for e in expired)
        raw_days = [e.day for e in expired if e.dataset in lake.RAW_DATASETS.values()]
        if raw_days:
            until = datetime.fromisoformat(max(raw_days)).replace(tzinfo=UTC) + timedelta(days=1)
            IngestAcks(self.state).forget_before(int(until.timestamp()))

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
        if self.engine.sweep():
            log.warning("deleted the scratch folders of killed ETL processes")
        if self.lake.recover():
            log.warning("finished publishing partitions a killed run had committed")
        if self.ledger.abandon_running():
            log.warning("runs interrupted earlier are marked failed; their files are pending")
        if agg.adopt_unversioned(self.ledger, self.lake):
            log.warning("versioned the event days of runs recorded before days had versions")
        summary = PassSummary()
        self.audits = []
        todo = pending(self.store, self.ledger.done_keys(PLAN))
        written: list[Written] = []
        cfg = self.settings.etl
        for kind in KINDS:
            of_kind = [f for f in todo if f.key.startswith(lake.raw_dataset(kind) + "/")]
            for batch in batches(of_kind, cfg.batch_bytes, cfg.batch_files):
                if summary.stopped:
                    return summary
                done = self._events_run(kind, batch, summary)
                if done is None:  # failed: the rest of this dataset waits for the next pass
                    break
                written += done
        for day, (version, windows) in self.ledger.aggregates_due(cfg.windows).items():
            if summary.stopped:
                return summary
            self._aggregate(day, version, windows, summary)
        crowded = sorted({f"{w.dataset}/{w.partition}" for w in written
                          if w.files >= comp.AUTO_SMALL_FILES})
        summary.compacted = self._compact(
            crowded, lambda sizes: comp.small_files(sizes, cfg.target_file_bytes)
            >= comp.AUTO_SMALL_FILES, summary)
        if self.auditor is not None and not summary.stopped:
            self._reconcile(summary)
        return summary

    def _reconcile(self, summary: PassSummary) -> None:
        """Compare the lake with the ETL's and the raw writer's ledgers; a partition short of
        rows or a raw file gone is a failed check (logged, held, in the summary line)."""
        assert self.auditor is not None
        raw = RawFileLedger(self.state, consumer="etl")
        acks = IngestAcks(self.state)
        keep_from = keep.cutoffs(self.settings.lake.retention, datetime.now(UTC).date())
        partitions = [p for p in self.ledger.partitions()  # older ones may be gone by policy
                      if keep.within(str(p["dataset"]), str(p["partition"]), keep_from)]
        recorded = {ds: {k: n for k, n in raw.files(ds).items()
                         if keep.within(ds, k, keep_from)}
                    for ds in (*lake.RAW_DATASETS.values(), lake.ERRORS_DATASET)}
        first_hour = (datetime.fromisoformat(keep_from["raw"]).replace(tzinfo=UTC).timestamp()
                      if "raw" in keep_from else 0.0)
        acked = {k: v for k, v in acks.acked().items() if k[1] >= first_hour}
        audit = self.auditor.reconcile(
            partitions, self.lake.files,
            lambda keys: self.engine.count_rows([self.lake.location(k) for k in keys]),
            recorded, self.store.sizes,
            StreamFacts(acked, [f for f in raw.landed() if f[1] >= first_hour],
                        acks.landed_through()))
        self.audits.append(audit)
        short = {r.partition.split("date=")[-1] for r in audit.failed
                 if r.dataset == lake.AGGREGATES_DATASET and "date=" in r.partition}
        if short:  # derived data: recomputed from the transformed lake by the next pass
            self.ledger.recompute_days(short)
        summary.held = sorted({f"{d}/{p}" for a in self.audits for d, p in a.held})
        summary.missing += [f"{r.dataset}/{r.partition}: {r.detail}" for r in audit.failed
                            if r.partition != RUN]

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
                    summary: PassSummary) -> list[Written] | None:
        """One run over `batch`, retried after a transient failure; None when it failed."""
        self.reading = Reading()
        try:
            screened = self.screen.screen(batch)
        except Exception as err:  # the check could not read the files (an S3 outage, say)
            run_id = self.ledger.start(PLAN, self.engine.name, [(f.key, f.bytes) for f in batch])
            summary.fail(self._failed(run_id, err), run_id)
            return None
        attempts = self.settings.etl.retries + 1
        attempt = 1
        while screened.claimed:
            keys = [(f.key, f.bytes) for f in screened.claimed]
            run_id = self.ledger.start(PLAN, self.engine.name, keys, attempt=attempt)
            self.reading = Reading()
            try:
                if attempt > 1:  # undo or finish what the failed attempt left published
                    self.lake.recover()
                counts, written = self._transform(kind, screened, run_id)
            except Exception as err:
                why = self._failed(run_id, err)
                if why.raw is not None and not why.disk_full:
                    self.screen.blamed(screened, self.reading.raw[why.raw], why.reason)
                    continue  # again without the file the engine could not read
                if why.transient and not why.disk_full and attempt < attempts:
                    delay = min(2.0 ** attempt, 60.0)
                    log.warning("run %s failed (%s); retrying in %.0f s", run_id, why.reason,
                                delay)
                    self.sleep(delay)
                    attempt += 1
                    continue
                summary.fail(why, run_id)
                summary.waiting += len(screened.waiting)
                return None
            except BaseException as err:  # interrupted: recorded, then the pass ends
                self.ledger.fail(run_id, failures.first_line(err))
                raise
            days = {w.partition.split("/")[0].removeprefix("date=") for w in written
                    if w.dataset == lake.transformed_dataset(kind)}
            self.ledger.succeed(run_id, counts, written, changed_days=days)
            self.screen.files.clear(screened.settled)
            summary.runs += 1
            summary.files += len(screened.claimed)
            summary.add(counts)
            summary.waiting += len(screened.waiting)
            return written
        summary.waiting += len(screened.waiting)
        return []

    def _failed(self, run_id: str, err: Exception) -> failures.Blame:
        """Record `run_id` as failed with the one-line reason of `err`, and delete what it
        staged (a stage it had committed is finished instead)."""
        why = failures.blame(err, self.reading.raw, self.reading.parquet)
        self.ledger.fail(run_id, why.reason)
        log.error("run %s failed: %s", run_id, why.reason)
        try:
            self.lake.recover()
        except Exception as again:  # e.g. the disk is still full: the next pass recovers
            log.warning("could not clean up after run %s: %s", run_id,
                        failures.first_line(again))
        return why

    def _transform(self, kind: str, screened: Screened,
                   run_id: str) -> tuple[dict[str, int], list[Written]]:
        staged = self.stage_events(kind, screened.read, run_id, whole=screened.whole)
        if self.auditor is not None:  # audit before publish: a held partition is never seen
            stage = self.lake.stage(run_id) / "out"
            self.audits.append(self.auditor.audit_run(StagedRun(
                run_id, kind, staged.dataset, staged.engine_counts,
                [(self.lake.location(f.key), f.bytes, f.hour) for f in screened.read],
                stage / "events", stage / "quarantine", staged.replaced_bytes)))
        replaced = self.lake.publish(run_id, {"events": staged.dataset},
                                     append={"quarantine": QUARANTINE}, key=staged.key)
        written = [self._measure(p) for p in replaced]
        written += [self._measure(p) for p in staged.appended]
        return {**staged.counts, "partitions": len(replaced)}, written

    def stage_events(self, kind: str, batch: list[RawFile], run_id: str,
                     whole: Sequence[RawFile] = ()) -> Staged:
        """Transform a batch into the run's stage: find the event-time partitions it touches,
        run the events plan over the batch merged with those partitions' rows (and checked
        against the ids within the dedup horizon), and split any file far above the target
        size; the files of `whole` are quarantined whole. Nothing is published yet."""
        files = [self.lake.location(f.key) for f in batch]
        self.reading.raw.update({self.lake.location(f.key): f.key for f in batch})
        dataset = lake.transformed_dataset(kind)
        parts = sorted({(str(r["date"]), str(r["hour"])) for r in self.engine.query(
            partitions_plan(), files, {}, "partitions")}) if files else []
        sizes = {k: n for date, hour in parts
                 for k, n in self.lake.files(f"{dataset}/{lake.event_hour(date, hour)}/").items()}
        existing = self._parquet(sorted(sizes))
        horizon = self._parquet(horizon_keys(
            dataset, parts, self.settings.etl.dedup_horizon_hours,
            lambda prefix: self.lake.files(prefix)))
        stage = self.lake.stage(run_id)
        out = stage / "out"
        unreadable = [(self.lake.location(f.key),
                       datetime.fromtimestamp(f.hour, UTC).replace(tzinfo=None)) for f in whole]
        raw = self.engine.execute(events_plan(kind, unreadable), files,
                                  {"existing": existing, "horizon": horizon}, str(out))
        comp.split_large(self.engine, out / "events", self.settings.etl.target_file_bytes)
        drop_known(self.engine, self.lake, QUARANTINE, out / "quarantine", stage / "known",
                   reading=self.reading.parquet)
        key = hashlib.sha256("\n".join(sorted(
            files + [loc for loc, _ in unreadable])).encode()).hexdigest()[:32]
        counts = {
            "rows_in": raw.get("count_in", 0), "rows_out": raw.get("count_new", 0),
            "duplicates": raw.get("count_duplicates", 0),
            "quarantined": raw.get("count_quarantined", 0), "late": raw.get("count_late", 0),
            "reused": raw.get("count_reused", 0), "unreadable": raw.get("count_unreadable", 0),
        }
        appended = [f"{QUARANTINE}/{rel.as_posix()}"
                    for rel in pq.partition_dirs(out / "quarantine")]
        return Staged(run_id, dataset, key, counts, appended,
                      engine_counts={k: int(v) for k, v in raw.items()},
                      replaced_bytes=sum(sizes.values()))

    def _parquet(self, keys: Sequence[str]) -> list[str]:
        """The locations of lake files about to be read, noted for a failure's reason."""
        found = {self.lake.location(k): k for k in keys}
        self.reading.parquet.update(found)
        return list(found)

    def _measure(self, partition: str) -> Written:
        dataset, _, rel = partition.partition("/")
        files = self.lake.files(partition.rstrip("/") + "/")
        rows = self.engine.count_rows([self.lake.location(k) for k in sorted(files)])
        return Written(dataset, rel, rows, len(files), sum(files.values()))

    # -- compaction ------------------------------------------------------------------------

    def _compact(self, partitions: list[str],
                 wanted: Callable[[list[int]], bool],
                 summary: PassSummary | None = None) -> list[str]:
        """Compact each partition for which `wanted(file sizes)` holds, as one recorded run
        (plan `compact`, no raw inputs) per call; returns the partitions rewritten. A failure
        is recorded; with a `summary` it goes there, without one it is raised."""
        target = self.settings.etl.target_file_bytes
        todo = [p for p in partitions
                if wanted(list(self.lake.files(p + "/").values()))]
        if not todo:
            return []
        run_id = self.ledger.start(COMPACT, self.engine.name, [])
        self.reading = Reading()
        done: list[str] = []
        try:
            for n, partition in enumerate(todo):
                self._parquet(sorted(self.lake.files(partition + "/")))
                if comp.compact_partition(self.lake, self.engine, partition, target,
                                          f"{run_id}-{n}"):
                    done.append(partition)
            written = [self._measure(p) for p in done]
        except Exception as err:
            why = self._failed(run_id, err)
            if summary is None:
                raise failures.PassFailed([f"run {run_id}: {why.reason}"],
                                          why.transient) from None
            summary.fail(why, run_id)
            return done
        except BaseException as err:
            self.ledger.fail(run_id, failures.first_line(err))
            raise
        zero = dict.fromkeys(("rows_in", "rows_out", "duplicates", "quarantined", "late"), 0)
        self.ledger.succeed(run_id, {**zero, "partitions": len(done)}, written)
        return done

    # -- aggregates ------------------------------------------------------------------------

    def _aggregate(self, day: str, version: int, windows: list[str],
                   summary: PassSummary) -> None:
        """Recompute and publish the `windows` of `day` as one recorded run, which marks
        them current for `version` of the day's events; a failure is recorded and leaves
        the day due."""
        run_id = self.ledger.start(AGGREGATE, self.engine.name, [])
        self.reading = Reading()
        try:
            replaced = agg.aggregate_day(self.engine, self.lake, day, windows, run_id,
                                         self.settings.etl.target_file_bytes, self._parquet)
            written = [self._measure(p) for p in replaced]
            clocks = agg.day_clocks(self.engine, self.lake, day, self._parquet)
        except Exception as err:
            summary.fail(self._failed(run_id, err), run_id)
            return
        except BaseException as err:
            self.ledger.fail(run_id, failures.first_line(err))
            raise
        zero = dict.fromkeys(("rows_in", "rows_out", "duplicates", "quarantined", "late"), 0)
        self.ledger.succeed(run_id, {**zero, "partitions": len(replaced)}, written,
                            aggregated=[(w, day, version) for w in windows], clocks=clocks)
        summary.days_aggregated.append(day)


def _engine(settings: Settings, store: PartitionStore) -> Engine:
    """The configured engine; on an S3 lake it gets the endpoint and credentials, since it
    reads raw files and existing partitions straight from the bucket."""
    engine: Engine = settings.etl.engine.create(s3=store.credentials)
    return engine
