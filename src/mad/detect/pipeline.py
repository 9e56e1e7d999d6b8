"""The detection pipeline: published aggregates -> anomalies -> incidents -> alerts.

`DetectRunner(settings).run_once()` is one pass over the aggregates of
`settings.detect.window`:

1. delivers alerts committed earlier but not yet delivered to every sink (the outbox);
2. on its first pass (or after a failed one), loads every series' scorer state and
   watermark (the last window start it scored) and the tracker from the last checkpoint;
3. reads the `date=` partitions from the day of the newest watermark on, in day order,
   stopping at the first day that has not passed the quality gate (`PartitionGate`: a day
   with a transformed partition the quality checks hold, until an operator accepts it or a
   re-run passes; `QualityGate`), that cannot be read, or that is being
   replaced by the ETL at that instant: detection never skips past data it could not see;
4. scores each series' windows newer than its watermark that are complete (see "Which
   windows are scored" below), in window order, in batches of
   `detect.batch_windows` window starts. Per batch: the anomalies are written to
   `md-anomalies` (replacing that series x window range, so a replay does not duplicate
   them), the incident tracker is fed window by window (then advanced to the end of the
   window, on the data clock), one transaction saves the incidents and the batch's incident
   changes (the outbox) and `progress:<window>` (the last window start scored, and each
   series' last window: what `mad detect status` shows between checkpoints), and the outbox
   is delivered.

A pass that scored windows, sent alerts or failed is recorded in `detect_runs`
(`mad.state.detect_runs`), for the Jobs view.

Checkpoints: the detector state is large (an ensemble keeps ~0.7 MB of history per series
once warm), so the scorer states, watermarks and tracker are saved together, in one
transaction, every `detect.checkpoint_s` seconds (0: every batch) and on `close()`, not per
batch. They stay in memory between passes. After a crash (or a failed pass) the runner
resumes from the last checkpoint and replays the windows after it: detectors and tracker are
deterministic, so the replay writes the same anomalies over themselves, upserts the same
incidents, and regenerates the same changes, whose dedup keys the sent log already holds.

One process scores a window size at a time: `run_once` takes a lease in the state database
(`detect:<window>`), renews it per batch and gives it up on `close()`; a second process gets
`DetectBusy`. The lease of a killed process on the same host is taken over at once, one from
another host once it expires (`detect.lease_s`, at least 3 x `watch_interval_s`).

With `detect.shards: N` (> 1) several processes share a window size instead
(`mad.detect.shards`): each holds its fair share of N shard leases, scores only its shards'
series (their state loaded when a shard is taken, saved before one is given back), writes
their anomalies to per-shard files and commits per batch, instead of feeding the tracker, what
each shard scored per window start and how far it is complete. The one worker holding the
incident step (`mad.detect.incidents_step`) feeds the tracker from that, in window order, up
to the least "complete to" over the shards: the same sequence one unsharded runner feeds, so
shards=1 and shards=N give the same anomalies, incidents and alerts.

Which windows are scored: those that are complete, that is whose end the event-time
watermark (`mad.detect.watermark`) has passed by `detect.allowed_lateness_s`. The watermark
comes from the source clocks the ETL records with the aggregates (`mad.state.event_clocks`:
the oldest newest-event time over hosts that are not idle, or the ingest floor of the raw
lake, whichever is later), or, for aggregates no ETL clock describes, from the newest window
of each service. It never goes back (`detect_watermarks`). An explicit `detect.hold_windows`
also holds back the newest N window starts of the lake, as it did before the watermark.

Windows at or before a series' watermark are not scored again. The ETL recomputes a whole day
when late events arrive, so a window already scored can change afterwards; its anomalies,
incidents and alerts stand, since detectors learn in time order and alerts were already sent.
Each pass compares the counts of the scored windows of the days it reads, and of the older
days (within `detect.late_horizon_hours`) whose aggregate files changed, with the counts they
were scored with (`mad.state.detect_scored`), and records the windows that changed as late
(`detect_late`): the pass summary, `mad detect status` and the state database show them.

Restart: killing the process at any point and running again gives the same anomalies,
incidents and alerts as one uninterrupted run, provided the aggregates it replays did not
change in between (a day the ETL recomputed after late events is scored as it is now); an
alert is delivered at least once per sink and carries a dedup key, and the sent log keeps it
from being sent again after a restart.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from mad import lake
from mad.config import Settings
from mad.detect.alerts import AlertSink, Dispatcher, open_sinks
from mad.detect.codec import change_to_dict
from mad.detect.incidents import IncidentTracker, window_seconds
from mad.detect.incidents_step import IncidentStep, complete_key
from mad.detect.lake_io import (
    UnreadableAggregates,
    Windows,
    aggregate_days,
    newest_by_service,
    newest_start,
    read_windows,
    write_anomalies,
)
from mad.detect.lease import DetectBusy, DetectLease
from mad.detect.model import Anomaly, Incident, IncidentChange
from mad.detect.outbox import Outbox
from mad.detect.series import SeriesScorer, WindowRow
from mad.detect.shards import ShardLeases, lease_prefix, shard_of
from mad.detect.summary import BatchReport, DetectSummary
from mad.detect.watermark import Source, Watermark, compute
from mad.state import (
    DetectPass,
    DetectRuns,
    DetectStore,
    EventClocks,
    Handoff,
    QualityStore,
    ScoredStore,
    SentAlerts,
    SeriesState,
    open_state,
)
from mad.state.leases import LeaseStore, gone, new_owner
from mad.stores import ObjectNotFound, lake_store

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (service, series)


class PartitionGate(Protocol):
    """Whether a `date=` partition of the aggregates passed the data-quality checks."""

    def passed(self, window: str, day: str) -> bool: ...


class OpenGate:
    """Every partition passes (`quality.enabled: false`)."""

    def passed(self, window: str, day: str) -> bool:
        return True


class QualityGate:
    """A day passes unless the quality gate holds one of its transformed partitions (the
    aggregates of every window are computed from them) or the window's aggregates of that
    day (reconciliation found them short)."""

    def __init__(self, quality: QualityStore) -> None:
        self.quality = quality

    def passed(self, window: str, day: str) -> bool:
        if day in self.quality.held_days(lake.TRANSFORMED_DATASETS.values()):
            return False
        mine = lake.aggregates_prefix(window).removeprefix(lake.AGGREGATES_DATASET + "/")
        return not any(str(r["partition"]).startswith(f"{mine}date={day}")
                       for r in self.quality.held([lake.AGGREGATES_DATASET]))


@dataclass
class Progress:
    """Where detection stands in memory: the resume point of the next window to score."""

    saved: dict[Key, SeriesState]  # the last checkpoint, for series not scored since
    tracker: IncidentTracker
    marks: dict[Key, datetime] = field(default_factory=dict)  # watermarks, in memory
    scorers: dict[Key, SeriesScorer] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)  # scored since the last checkpoint
    saved_at: float = field(default_factory=time.monotonic)
    kept: datetime | None = None  # the watermark of the previous pass (it never goes back)
    checked: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # older
    # days compared for late changes: their aggregate files (key, bytes) when compared
    complete: dict[int, datetime] = field(default_factory=dict)  # sharded: each held
    # shard's "complete to" (every window start up to it scored), as last committed

    def forget(self, keys: set[Key]) -> None:
        """Drop series this worker no longer scores (their shard went to another)."""
        for key in keys:
            self.saved.pop(key, None)
            self.marks.pop(key, None)
            self.scorers.pop(key, None)
            self.dirty.discard(key)


class DetectRunner:
    def __init__(self, settings: Settings, gate: PartitionGate | None = None,
                 sinks: list[AlertSink] | None = None) -> None:
        self.settings = settings
        self.cfg = settings.detect
        self.store = lake_store(settings)
        engine = open_state(settings.state_url)
        self.db = DetectStore(engine)
        self.scored = ScoredStore(engine)
        self.clocks = EventClocks(engine)
        self.gate: PartitionGate = gate or (
            QualityGate(QualityStore(engine)) if settings.quality.enabled else OpenGate())
        self.outbox = Outbox(self.db, Dispatcher(open_sinks(settings) if sinks is None
                                                 else sinks, SentAlerts(engine)))
        self.step = timedelta(seconds=window_seconds(self.cfg.window))
        self.progress: Progress | None = None
        leases, owner = LeaseStore(engine), new_owner()
        ttl = max(self.cfg.lease_s, 3 * self.cfg.watch_interval_s)
        self.lease = DetectLease(leases, f"detect:{self.cfg.window}", ttl, owner=owner)
        self.shards: ShardLeases | None = None  # sharded: this worker's shard leases
        self.incidents: IncidentStep | None = None
        if self.cfg.shards > 1:
            self.shards = ShardLeases(leases, self.cfg.window, self.cfg.shards, ttl, owner)
            self.incidents = IncidentStep(self.db, leases, owner, self.cfg, self.step,
                                          self.outbox, ttl)

    def close(self) -> None:
        """Save a checkpoint of what was scored, give up the lease, release the database."""
        try:
            self.checkpoint()
            if self.shards is not None and self.incidents is not None:
                self.shards.release()
                self.incidents.release()
            else:
                self.lease.release()
        finally:
            self.db.engine.dispose()

    def run_once(self, stop: threading.Event | None = None,
                 progress: Callable[[BatchReport], None] | None = None) -> DetectSummary:
        """One pass (see the module doc); returns early, between batches, once `stop` is set.
        A pass that raises drops the in-memory state: the next one resumes from the last
        checkpoint."""
        self._hold()
        summary = DetectSummary(self.cfg.window)
        self.outbox.new_pass()
        summary.alerts, summary.pending = self.outbox.deliver()
        if self.progress is None:
            self.progress = self._load()
        started = datetime.now(UTC)
        try:
            if self.shards is not None:
                self._claim(self.progress)
            done = self._pass(self.progress, summary, stop, progress)
            if self.incidents is not None:
                if done is not None:
                    self._complete(self.progress, done)
                summary.changes += self.incidents.run()
                sent, summary.pending = self.outbox.deliver()
                summary.alerts += sent
        except BaseException as err:
            self.progress = None
            self._record(started, summary, f"{type(err).__name__}: {err}")
            raise
        self._record(started, summary, None)
        if time.monotonic() - self.progress.saved_at >= self.cfg.checkpoint_s:
            self.checkpoint()
        return summary

    def checkpoint(self) -> None:
        """Save the scorer states, watermarks and tracker of everything scored so far."""
        p = self.progress
        if p is None or not p.dirty:
            return
        if self.shards is not None:
            self._renew(p)  # a shard another worker took is not saved over its progress
            meta: dict[str, dict[str, object]] = {}
        else:
            try:
                self.lease.hold()
            except DetectBusy as err:  # another process went on from our last checkpoint
                log.warning("detection state not saved: %s", err)
                self.progress = None
                return
            meta = {f"tracker:{self.cfg.window}": p.tracker.state()}
        series = [SeriesState(k[0], k[1], p.marks[k], p.scorers[k].points, p.scorers[k].state())
                  for k in sorted(p.dirty)]
        self.db.commit(self.cfg.window, series, meta, [], [])
        p.saved.update({(s.service, s.series): s for s in series})
        p.dirty.clear()
        p.saved_at = time.monotonic()

    def _record(self, started: datetime, summary: DetectSummary, error: str | None) -> None:
        """Record the pass in `detect_runs` when it did something or failed; a failure to
        record is logged, never raised over the pass's own outcome."""
        if error is None and not (summary.windows or summary.alerts):
            return
        try:
            DetectRuns(self.db.engine).record(DetectPass(
                self.cfg.window, started, datetime.now(UTC), summary.windows, summary.points,
                summary.anomalies, summary.changes, summary.alerts, summary.duplicates,
                summary.watermark, error))
        except Exception as err:  # the state database is down: the pass stands
            log.warning("detection pass not recorded in detect_runs: %s", err)

    # -- shards ----------------------------------------------------------------------------

    def _hold(self) -> None:
        """Make sure no other kind of runner scores this window size: with shards, no
        unsharded runner holds it; without, no shard is held by a live worker."""
        if self.shards is not None:
            holder = self.shards.busy()
            if holder is not None:
                raise DetectBusy(f"detect:{self.cfg.window} is being scored by {holder} "
                                 "without shards; every worker of a window size must use the "
                                 "same detect.shards")
            return
        self.lease.hold()
        for h in self.lease.store.held(lease_prefix(self.cfg.window)):
            if ":shard:" in h.name and not gone(h.owner):
                self.lease.release()
                raise DetectBusy(f"{h.name} is held by {h.owner}: the window size is being "
                                 "scored with shards; use the same detect.shards")

    def _shard(self, key: Key) -> int:
        return shard_of(key[0], key[1], self.cfg.shards)

    def _mine(self, key: Key) -> bool:
        return self.shards is None or self._shard(key) in self.shards.held

    def _claim(self, p: Progress, take: bool = True) -> None:
        """Take this worker's share of the shards: load the state of those gained, save and
        give back those above the share, forget those lost. Between batches (not `take`)
        only gives back, so a worker started later gets work without waiting for a pass."""
        assert self.shards is not None
        claim = self.shards.claim(take)
        if claim.lost:
            self._drop(p, claim.lost)
        if claim.surplus:
            self.checkpoint()  # saved first: the next holder resumes from it
            self._drop(p, claim.surplus)
            self.shards.release(claim.surplus)
        if claim.gained:
            n = self.cfg.shards
            saved = {k: v for k, v in self.db.load_series(self.cfg.window).items()
                     if self._shard(k) in claim.gained}
            p.saved.update(saved)
            p.marks.update({k: v.watermark for k, v in saved.items()})
            docs = self.db.load_meta_under(f"complete:{self.cfg.window}:")
            for shard in claim.gained:
                doc = docs.get(complete_key(self.cfg.window, shard, n)) or {}
                if isinstance(doc.get("to"), str):
                    p.complete[shard] = datetime.fromisoformat(doc["to"])
            log.info("detection %s: took shards %s of %d (holds %s)", self.cfg.window,
                     sorted(claim.gained), n, sorted(self.shards.held))

    def _drop(self, p: Progress, shards: set[int]) -> None:
        p.forget({k for k in set(p.marks) | set(p.saved) if self._shard(k) in shards})
        for shard in shards:
            p.complete.pop(shard, None)
        if shards:
            log.info("detection %s: gave up shards %s", self.cfg.window, sorted(shards))

    def _renew(self, p: Progress) -> None:
        assert self.shards is not None
        lost = self.shards.renew()
        if lost:
            log.warning("detection %s: shards %s were taken by another worker",
                        self.cfg.window, sorted(lost))
            self._drop(p, lost)

    def _complete(self, p: Progress, to: datetime) -> None:
        """Record that every held shard has scored everything up to `to`."""
        assert self.shards is not None
        n, window = self.cfg.shards, self.cfg.window
        moved = {k: to for k in self.shards.held if p.complete.get(k) is None
                 or p.complete[k] < to}
        if moved:
            self._renew(p)
            moved = {k: t for k, t in moved.items() if k in self.shards.held}
            self.db.commit(window, [], {complete_key(window, k, n): {"to": t.isoformat()}
                                        for k, t in moved.items()}, [], [])
            p.complete.update(moved)

    def _load(self) -> Progress:
        # with shards, the series' state is loaded as their shards are claimed
        saved = self.db.load_series(self.cfg.window) if self.shards is None else {}
        state = self.db.load_meta(f"tracker:{self.cfg.window}")
        tracker = IncidentTracker(self.cfg.incident_gap_s, self.cfg.resolve_after_s,
                                  self.cfg.confirm_windows, self.cfg.confirm_score)
        if state is not None:  # its incidents, under the settings of this run
            tracker = IncidentTracker.from_state(state).configured_as(tracker)
        kept = self.scored.watermark(self.cfg.window)
        return Progress(saved, tracker, {k: s.watermark for k, s in saved.items()},
                        kept=kept.at if kept is not None else None)

    def _pass(self, p: Progress, summary: DetectSummary, stop: threading.Event | None,
              progress: Callable[[BatchReport], None] | None) -> datetime | None:
        """Score what is complete; returns the newest window start up to which everything
        was scored when the pass reached the end, else None (held, stopped, nothing yet)."""
        window = self.cfg.window
        days = aggregate_days(self.store, window)
        if not days:
            summary.held = f"no aggregates of window={window} in the lake yet"
            return None
        first_day = self._first_day(p)
        try:
            mark = self._watermark(p, {d: k for d, k in days.items() if d >= first_day})
            newest = (newest_start(self.store, days[max(days)]) if self.cfg.hold_windows
                      else None)
        except (ObjectNotFound, UnreadableAggregates) as err:
            summary.held = f"newest day not readable now ({err})"
            return None
        summary.event_watermark, summary.watermark_basis = mark.at, mark.basis
        last = mark.last_start(self.step.total_seconds(), self.cfg.allowed_lateness_s)
        if mark.at is None or last is None:
            return None
        if mark.at != p.kept:
            self.scored.save_watermark(window, mark.at, mark.basis, mark.sources, mark.idle,
                                       mark.ingest_floor)
            p.kept = mark.at
        held_from = (newest - self.step * (self.cfg.hold_windows - 1)
                     if newest is not None else None)
        self.scored.prune(window, mark.at - timedelta(hours=self.cfg.late_horizon_hours))
        since = self.scored.since(window)  # late changes are looked for from here on
        if since is not None:
            self._late_in_older_days(p, days, first_day, since, summary)

        def fresh(row: WindowRow) -> bool:
            seen = p.marks.get((row.service, row.series))
            return (row.window_start <= last and (seen is None or row.window_start > seen)
                    and (held_from is None or row.window_start < held_from)
                    and self._mine((row.service, row.series)))

        for day, keys in days.items():
            if day < first_day:
                continue
            if not self.gate.passed(window, day):
                summary.held = (f"date={day} is held by the quality gate (`mad quality "
                                "report`; `mad quality accept PARTITION --reason ...`)")
                return None
            try:
                got = read_windows(self.store, keys)
            except ObjectNotFound:
                summary.held = f"date={day} is being replaced by the ETL; the next pass reads it"
                return None
            except UnreadableAggregates as err:
                log.error("%s", err)
                summary.held = str(err)
                return None
            if since is not None:
                self._late(p, day, got, since, summary)
            summary.duplicates += sum(1 for r in got.duplicates if fresh(r))
            summary.bad_rows += got.bad_rows
            for batch in _batches([r for r in got.rows if fresh(r)], self.cfg.batch_windows):
                if stop is not None and stop.is_set():
                    return None
                if self.shards is not None:
                    self._claim(p, take=False)
                    batch = [r for r in batch if self._mine((r.service, r.series))]
                    if not batch:
                        continue
                else:
                    self.lease.hold()
                report = self._batch(p, batch, summary)
                if self.cfg.checkpoint_s == 0:
                    self.checkpoint()
                if progress is not None:
                    progress(report)
        return last if held_from is None else min(last, held_from - self.step)

    def _first_day(self, p: Progress) -> str:
        """The first day with windows left to score. A batch covers every series (of a
        shard) up to its last window start, so nothing before the newest watermark's day
        (of each shard) is left to score; a series that stopped does not hold it back."""
        if self.shards is None:
            return max(p.marks.values()).date().isoformat() if p.marks else ""
        newest: dict[int, datetime] = {}
        for key, mark in p.marks.items():
            shard = self._shard(key)
            newest[shard] = max(mark, newest.get(shard, mark))
        for shard in self.shards.held:  # a shard without series yet: from where it is complete
            if shard not in newest:
                if shard not in p.complete:
                    return ""
                newest[shard] = p.complete[shard]
        return min(newest.values()).date().isoformat() if newest else ""

    # -- completeness and late changes -----------------------------------------------------

    def _watermark(self, p: Progress, recent: dict[str, list[str]]) -> Watermark:
        """This pass's watermark: from the ETL's source clocks when it recorded any for this
        window size, else from the newest window start of each service in `recent` (the days
        from the newest scored one on)."""
        clocks = self.clocks.sources(self.cfg.window)
        if clocks:
            sources = [Source(c.kind, f"{c.service}/{c.host}", c.newest_event, c.newest_ingest)
                       for c in clocks]
            basis = "hosts"
        else:
            newest = newest_by_service(self.store, [k for keys in recent.values()
                                                    for k in keys])
            sources = [Source("", service, t) for service, t in sorted(newest.items())]
            basis = "services"
        return compute(sources, self.cfg.idle_host_s, self.settings.writer.flush_interval_s,
                       previous=p.kept, basis=basis)

    def _late_in_older_days(self, p: Progress, days: dict[str, list[str]], first_day: str,
                            since: datetime, summary: DetectSummary) -> None:
        """Look for late changes in the days before `first_day` (scored already, not read by
        this pass) from `since` on, each once its aggregate files changed; a day held by
        the quality gate or unreadable now is looked at by a later pass."""
        window = self.cfg.window
        for day, keys in days.items():
            if day >= first_day or day < since.date().isoformat():
                continue
            files = tuple(sorted(self.store.sizes(
                f"{lake.aggregates_prefix(window)}date={day}/").items()))
            if p.checked.get(day) == files or not self.gate.passed(window, day):
                continue
            try:
                got = read_windows(self.store, keys)
            except (ObjectNotFound, UnreadableAggregates) as err:
                log.warning("late changes of date=%s not looked for now: %s", day, err)
                continue
            self._late(p, day, got, since, summary)
            p.checked[day] = files

    def _late(self, p: Progress, day: str, got: Windows, since: datetime,
              summary: DetectSummary) -> None:
        """Compare the windows of `day` at or before their series' watermark with what they
        were scored with; count and record those that changed (`detect_late`)."""
        try:
            first = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:  # a `date=` folder that names no day: nothing was scored by day
            return
        start = max(first, since)
        current: dict[Key, dict[datetime, int]] = {}
        for row in got.rows:
            seen = p.marks.get((row.service, row.series))
            if seen is not None and start <= row.window_start <= seen:
                current.setdefault((row.service, row.series), {})[row.window_start] = \
                    _count(row)
        if not current:
            return
        found = self.scored.compare(self.cfg.window, start, first + timedelta(days=1), current)
        summary.late_windows += len(found)
        summary.late_events += sum(f.added for f in found)
        for f in found[:5]:
            log.info("late: %s/%s window %s was scored with count %d, now %d", f.service,
                     f.series, f.window_start.isoformat(), f.scored_count, f.count)

    # -- one batch -------------------------------------------------------------------------

    def _batch(self, p: Progress, rows: list[WindowRow], summary: DetectSummary) -> BatchReport:
        anomalies: list[Anomaly] = []
        spans: dict[Key, tuple[datetime, datetime]] = {}
        by_key: dict[Key, list[WindowRow]] = {}
        for row in rows:
            by_key.setdefault((row.service, row.series), []).append(row)
        found: dict[int, list[Anomaly]] = {}  # id(row) -> its anomalies
        for key, series_rows in by_key.items():  # one detector batch per series and stat
            scorer = p.scorers.get(key)
            if scorer is None:
                state = p.saved[key].state if key in p.saved else None
                scorer = p.scorers[key] = SeriesScorer(self.cfg, key[0], key[1], state)
            for row, row_found in zip(series_rows, scorer.process_many(series_rows),
                                      strict=True):
                found[id(row)] = row_found
        for row in rows:
            key = (row.service, row.series)
            anomalies += found[id(row)]
            summary.bad_values += sum(1 for s in self.cfg.stats
                                      if not math.isfinite(row.values.get(s, math.nan)))
            spans[key] = (spans[key][0] if key in spans else row.window_start, row.window_start)
            p.marks[key] = row.window_start
            p.dirty.add(key)
        starts = sorted({row.window_start for row in rows})
        if self.shards is not None:
            self._shard_batch(p, rows, anomalies, spans, starts)
            changes: list[IncidentChange] = []
        else:
            changes = self._unsharded_batch(p, rows, anomalies, spans, starts)
        summary.batches += 1
        summary.windows += len(starts)
        summary.points += len(rows)
        summary.anomalies += len(anomalies)
        summary.changes += len(changes)
        summary.watermark = max(starts[-1], summary.watermark or starts[-1])
        sent, summary.pending = self.outbox.deliver()
        summary.alerts += sent
        return BatchReport(starts[0], starts[-1], len(rows), len(anomalies), len(changes))


    def _unsharded_batch(self, p: Progress, rows: list[WindowRow], anomalies: list[Anomaly],
                         spans: dict[Key, tuple[datetime, datetime]],
                         starts: list[datetime]) -> list[IncidentChange]:
        """Write the batch's anomalies, feed the tracker window by window and commit the
        incidents, their changes and the progress together."""
        changes: list[IncidentChange] = []
        for start in starts:
            changes += p.tracker.observe([a for a in anomalies if a.window_start == start])
            changes += p.tracker.advance(start + self.step)
        write_anomalies(self.store, self.cfg.window, anomalies, spans)
        self._record_counts(rows)
        incidents: dict[str, Incident] = {c.incident.id: c.incident for c in changes}
        incidents.update({i.id: i for i in p.tracker.open_incidents()})
        self.db.commit(self.cfg.window, [],
                       {f"progress:{self.cfg.window}": _progress(p, starts[-1], p.marks)},
                       incidents.values(), [(c.dedup_key, change_to_dict(c)) for c in changes])
        return changes

    def _shard_batch(self, p: Progress, rows: list[WindowRow], anomalies: list[Anomaly],
                     spans: dict[Key, tuple[datetime, datetime]],
                     starts: list[datetime]) -> None:
        """Write each shard's anomalies to its own files; commit, per shard, what it scored
        at each window start (for the incident step), how far it is complete and its
        progress, in one transaction."""
        assert self.shards is not None
        n, window = self.cfg.shards, self.cfg.window
        scored: dict[int, set[datetime]] = {}
        for row in rows:
            scored.setdefault(self._shard((row.service, row.series)), set()).add(
                row.window_start)
        found: dict[tuple[int, datetime], list[dict[str, object]]] = {}
        for a in anomalies:
            found.setdefault((self._shard((a.service, a.series)), a.window_start), []).append(
                a.to_dict())
        for shard in sorted(scored):
            mine = {k: v for k, v in spans.items() if self._shard(k) == shard}
            write_anomalies(self.store, window, [a for a in anomalies if self._shard(
                (a.service, a.series)) == shard], mine, shard=lake.shard_name(shard, n))
        self._record_counts(rows)
        handoff = [Handoff(n, shard, start, found.get((shard, start), []))
                   for shard, of_shard in sorted(scored.items()) for start in sorted(of_shard)]
        meta: dict[str, dict[str, object]] = {}
        for shard in sorted(self.shards.held):
            if p.complete.get(shard) is None or p.complete[shard] < starts[-1]:
                p.complete[shard] = starts[-1]
                meta[complete_key(window, shard, n)] = {"to": starts[-1].isoformat()}
            marks = {k: m for k, m in p.marks.items() if self._shard(k) == shard}
            if marks:
                meta[f"progress:{window}:{lake.shard_name(shard, n)}"] = _progress(
                    p, max(marks.values()), marks)
        self.db.commit(window, [], meta, [], [], handoff)

    def _record_counts(self, rows: list[WindowRow]) -> None:
        counts: dict[Key, dict[datetime, int]] = {}
        for row in rows:
            counts.setdefault((row.service, row.series), {})[row.window_start] = _count(row)
        self.scored.record(self.cfg.window, counts)


def _count(row: WindowRow) -> int:
    """The window's event count as scored (-1 when the row has none)."""
    n = row.values.get("count", math.nan)
    return int(n) if math.isfinite(n) and abs(n) < 2**62 else -1


def _progress(p: Progress, scored_to: datetime,
              marks: dict[Key, datetime]) -> dict[str, object]:
    """What a batch commits of where detection stands: the last window start scored, and
    every series (of `marks`) with its last window scored and points (`mad detect status`
    reads it, so it need not wait for the next checkpoint)."""
    series = []
    for key, mark in sorted(marks.items()):
        scorer = p.scorers.get(key)
        points = scorer.points if scorer is not None else p.saved[key].points
        series.append([key[0], key[1], mark.isoformat(), points])
    return {"scored_to": scored_to.isoformat(), "series": series}


def _batches(rows: list[WindowRow], size: int) -> Iterator[list[WindowRow]]:
    """Rows (ordered by window start) cut into runs of at most `size` window starts."""
    batch: list[WindowRow] = []
    starts = 0
    for row in rows:
        if not batch or row.window_start != batch[-1].window_start:
            if starts == size:
                yield batch
                batch, starts = [], 0
            starts += 1
        batch.append(row)
    if batch:
        yield batch
