"""The detection pipeline: published aggregates -> anomalies -> incidents -> alerts.

`DetectRunner(settings).run_once()` is one pass over the aggregates of
`settings.detect.window`:

1. delivers alerts committed earlier but not yet delivered to every sink (the outbox);
2. loads every series' scorer state and watermark (the last window start it scored);
3. reads the `date=` partitions from the day of the newest watermark on, in day order,
   stopping at the first day that has not passed the quality gate (`PartitionGate`; until
   the quality stage exists every day passes), that cannot be read, or that is being
   replaced by the ETL at that instant: detection never skips past data it could not see;
4. scores each series' windows newer than its watermark, in window order, in batches of
   `detect.batch_windows` window starts. Per batch: the anomalies are written to
   `md-anomalies` (replacing that series x window range, so a replay after a crash does not
   duplicate them), the incident tracker is fed window by window (then advanced to the end
   of the window, on the data clock), and ONE transaction saves the scorer states,
   watermarks, tracker, incidents and the batch's incident changes (outbox); then the
   outbox is delivered.

Windows that are not scored, on purpose:
- the newest `detect.hold_windows` window starts of the lake (default 1, the window that is
  still filling while events arrive; its count and averages would look like a drop);
- windows at or before a series' watermark. The ETL recomputes a whole day when late events
  arrive, so a window already scored can change afterwards; it is not scored again (its
  anomalies, incidents and alerts stand), since detectors learn in time order and alerts
  were already sent. Raise `hold_windows` when events arrive late often.

Restart: killing the process at any point and running again gives the same anomalies,
incidents and alerts as one uninterrupted run; an alert is delivered at least once per sink
and carries a dedup key, and the sent log keeps it from being sent again after a restart.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mad import lake
from mad.config import Settings
from mad.detect.alerts import AlertSink, Dispatcher, open_sinks
from mad.detect.codec import change_from_dict, change_to_dict
from mad.detect.incidents import IncidentTracker, window_seconds
from mad.detect.lake_io import (
    UnreadableAggregates,
    aggregate_days,
    newest_start,
    read_windows,
    write_anomalies,
)
from mad.detect.model import Anomaly, Incident, IncidentChange
from mad.detect.series import SeriesScorer, WindowRow
from mad.state import DetectStore, SentAlerts, SeriesState, open_state
from mad.stores import ObjectNotFound

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (service, series)


class PartitionGate(Protocol):
    """Whether a `date=` partition of the aggregates passed the data-quality checks."""

    def passed(self, window: str, day: str) -> bool: ...


class OpenGate:
    """Every partition passes: the gate until the quality stage records its verdicts."""

    def passed(self, window: str, day: str) -> bool:
        return True


@dataclass
class DetectSummary:
    window: str
    batches: int = 0
    windows: int = 0  # window starts scored
    points: int = 0  # series windows scored
    anomalies: int = 0
    changes: int = 0  # incident changes (one alert each)
    alerts: int = 0  # deliveries to sinks
    pending: int = 0  # changes not yet delivered to every sink
    duplicates: int = 0  # duplicate aggregate rows of new windows (the first one is scored)
    bad_rows: int = 0  # aggregate rows without a window start, service or series
    bad_values: int = 0  # NaN / inf / missing values of scored stats (not scored)
    watermark: datetime | None = None  # the latest window start scored in this pass
    held: str = ""  # why the pass stopped before the newest data, if it did

    def line(self) -> str:
        text = (f"detect {self.window}: {self.batches} batches, {self.windows} windows, "
                f"{self.points} series windows scored, {self.anomalies} anomalies, "
                f"{self.changes} incident changes, {self.alerts} alerts sent")
        if self.pending:
            text += f" ({self.pending} waiting)"
        if self.duplicates or self.bad_rows or self.bad_values:
            text += (f"; skipped {self.duplicates} duplicate rows, {self.bad_rows} rows "
                     f"without keys, {self.bad_values} bad values")
        if self.watermark is not None:
            text += f"; scored up to {self.watermark:%Y-%m-%d %H:%M} UTC"
        return text + (f"; held back: {self.held}" if self.held else "")


@dataclass(frozen=True)
class BatchReport:
    """What one committed batch did, for progress output."""

    first: datetime
    last: datetime
    points: int
    anomalies: int
    changes: int


class DetectRunner:
    def __init__(self, settings: Settings, gate: PartitionGate | None = None,
                 sinks: list[AlertSink] | None = None) -> None:
        self.settings = settings
        self.cfg = settings.detect
        self.store = lake.open_store(settings.lake_url, settings.aws)
        engine = open_state(settings.state_url)
        self.db = DetectStore(engine)
        self.gate: PartitionGate = gate or OpenGate()
        self.dispatcher = Dispatcher(open_sinks(settings) if sinks is None else sinks,
                                     SentAlerts(engine))
        self.step = timedelta(seconds=window_seconds(self.cfg.window))
        self._down: set[str] = set()  # sinks that failed in this pass

    def close(self) -> None:
        self.db.engine.dispose()

    def run_once(self, stop: threading.Event | None = None,
                 progress: Callable[[BatchReport], None] | None = None) -> DetectSummary:
        """One pass (see the module doc); returns early, between batches, once `stop` is set."""
        summary = DetectSummary(self.cfg.window)
        self._down = set()
        self._deliver(summary)
        window = self.cfg.window
        saved = self.db.load_series(window)
        marks = {k: s.watermark for k, s in saved.items()}
        days = aggregate_days(self.store, window)
        if not days:
            summary.held = f"no aggregates of window={window} in the lake yet"
            return summary
        try:
            newest = newest_start(self.store, days[max(days)])
        except (ObjectNotFound, UnreadableAggregates) as err:
            summary.held = f"newest day not readable now ({err})"
            return summary
        if newest is None:
            return summary
        cutoff = newest - self.step * (self.cfg.hold_windows - 1)
        # a batch covers every series up to its last window start, so nothing before the
        # newest watermark's day is left to score (a series that stopped does not hold it)
        first_day = max(marks.values()).date().isoformat() if marks else ""
        tracker = self._tracker()
        scorers: dict[Key, SeriesScorer] = {}
        for day, keys in days.items():
            if day < first_day:
                continue
            if not self.gate.passed(window, day):
                summary.held = f"date={day} has not passed the quality checks"
                break
            try:
                got = read_windows(self.store, keys)
            except ObjectNotFound:
                summary.held = f"date={day} is being replaced by the ETL; the next pass reads it"
                break
            except UnreadableAggregates as err:
                log.error("%s", err)
                summary.held = str(err)
                break

            def fresh(row: WindowRow) -> bool:
                mark = marks.get((row.service, row.series))
                return row.window_start < cutoff and (mark is None or row.window_start > mark)

            summary.duplicates += sum(1 for r in got.duplicates if fresh(r))
            summary.bad_rows += got.bad_rows
            for batch in _batches([r for r in got.rows if fresh(r)], self.cfg.batch_windows):
                if stop is not None and stop.is_set():
                    return summary
                report = self._batch(batch, saved, scorers, tracker, summary)
                for row in batch:
                    marks[(row.service, row.series)] = row.window_start
                if progress is not None:
                    progress(report)
        return summary

    # -- one batch -------------------------------------------------------------------------

    def _batch(self, rows: list[WindowRow], saved: dict[Key, SeriesState],
               scorers: dict[Key, SeriesScorer], tracker: IncidentTracker,
               summary: DetectSummary) -> BatchReport:
        anomalies: list[Anomaly] = []
        spans: dict[Key, tuple[datetime, datetime]] = {}
        for row in rows:
            key = (row.service, row.series)
            scorer = scorers.get(key)
            if scorer is None:
                state = saved[key].state if key in saved else None
                scorer = scorers[key] = SeriesScorer(self.cfg, row.service, row.series, state)
            anomalies += scorer.process(row)
            summary.bad_values += sum(1 for s in self.cfg.stats
                                      if not math.isfinite(row.values.get(s, math.nan)))
            spans[key] = (spans[key][0] if key in spans else row.window_start, row.window_start)
        starts = sorted({row.window_start for row in rows})
        changes: list[IncidentChange] = []
        for start in starts:
            changes += tracker.observe([a for a in anomalies if a.window_start == start])
            changes += tracker.advance(start + self.step)
        write_anomalies(self.store, self.cfg.window, anomalies, spans)
        incidents: dict[str, Incident] = {c.incident.id: c.incident for c in changes}
        incidents.update({i.id: i for i in tracker.open_incidents()})
        self.db.commit(
            self.cfg.window,
            [SeriesState(k[0], k[1], span[1], scorers[k].points, scorers[k].state())
             for k, span in spans.items()],
            {f"tracker:{self.cfg.window}": tracker.state()},
            incidents.values(),
            [(c.dedup_key, change_to_dict(c)) for c in changes])
        summary.batches += 1
        summary.windows += len(starts)
        summary.points += len(rows)
        summary.anomalies += len(anomalies)
        summary.changes += len(changes)
        summary.watermark = max(starts[-1], summary.watermark or starts[-1])
        self._deliver(summary)
        return BatchReport(starts[0], starts[-1], len(rows), len(anomalies), len(changes))

    def _tracker(self) -> IncidentTracker:
        state = self.db.load_meta(f"tracker:{self.cfg.window}")
        if state is None:
            return IncidentTracker(self.cfg.incident_gap_s, self.cfg.resolve_after_s)
        return IncidentTracker.from_state(state)

    def _deliver(self, summary: DetectSummary) -> None:
        """Send the outbox; drop what every sink has (or what no sink could ever take).
        A sink that failed is not tried again in the same pass (a webhook that is down would
        cost its retries after every batch); the next pass tries it again."""
        pending = self.db.pending_alerts()
        if not pending:
            summary.pending = 0
            return
        sinks = list(self.dispatcher.sinks)
        changes = []
        for key, payload in pending:
            try:
                changes.append(change_from_dict(payload))
            except (KeyError, TypeError, ValueError) as err:
                log.error("alert %s in the outbox cannot be read (%s); it stays there", key, err)
        sent = self.dispatcher.sent
        healthy = [s for s in sinks if s.name not in self._down]
        if healthy:
            dispatcher = Dispatcher(healthy, sent)
            summary.alerts += dispatcher.dispatch(changes)
            self._down |= {f.sink for f in dispatcher.failures}
        done = [c.dedup_key for c in changes
                if all(sent.seen(f"{s.name}:{c.dedup_key}") for s in sinks)]
        self.db.delivered(done)
        summary.pending = len(pending) - len(done)


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
