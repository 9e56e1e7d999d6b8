"""When a window is complete: the event-time watermark that detection scores up to.

A window `[s, s + w)` is scored once the watermark has passed `s + w + detect.allowed_lateness_s`.
The watermark is the later of two lower bounds of how far the events are in:

- **the host clocks**: per source (one host's events of one kind, as of the published
  aggregates; `mad.state.event_clocks`), the newest event time, each event's time capped at
  the end of the ingest hour it was received in. The watermark is the OLDEST of them, leaving
  out idle sources, those more than `detect.idle_host_s` behind the median source. A host
  whose clock runs ahead, or one event dated hours in the future, only moves its own source
  forward, which never raises a minimum: as long as fewer than half of the sources are ahead,
  the median stays with the others and nothing ahead counts. A host whose clock runs behind
  (within `idle_host_s`) holds the watermark back, as it should: its events of a window
  arrive that much later. A source that goes quiet (a host stopped, a service down) falls
  behind the median and stops holding the others after `idle_host_s`.
- **the ingest floor**: the raw lake is partitioned by the hour the ingest API received each
  record (its clock, which no producer sets). Per kind, the newest ingest hour whose events
  are in the aggregates; the floor is the oldest of them minus one raw-writer flush interval
  (`writer.flush_interval_s`): the writer puts every record in a file within that interval, and
  the ETL reads a kind's files in ingest order, so everything received before the floor is in.
  It lets a backfill (old events received now) be scored whole, and keeps detection going when
  every host clock has stopped.

Aggregates that no ETL clocks describe (written by another tool) are judged by their own
newest window start per service: the services are the sources (`services` basis).

The watermark never goes back: the one of the previous pass (`previous`) is a lower bound
too, so a restart resumes from it and recomputes the same or a later one.

Pure: values in, a `Watermark` out (`compute`); reading the clocks is the pipeline's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # the range of event times the ETL accepts:
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # a source outside it (bad aggregates) is ignored


@dataclass(frozen=True)
class Source:
    """One source: `kind` (log, metric, apm; '' when unknown), a name for messages, its
    newest (capped) event time and the start of the newest ingest hour it was seen in."""

    kind: str
    name: str
    newest: datetime
    ingest: datetime | None = None


@dataclass(frozen=True)
class Watermark:
    at: datetime | None  # None: nothing is known yet, nothing is complete
    basis: str  # what gave `at`: "hosts", "services", "ingest", "previous" or "none"
    sources: int = 0  # sources known
    idle: int = 0  # left out: more than idle_host_s behind the median source
    ingest_floor: datetime | None = None

    def last_start(self, window_s: float, lateness_s: float) -> datetime | None:
        """The latest window start that is complete (None: none is)."""
        if self.at is None:
            return None
        return self.at - timedelta(seconds=window_s + lateness_s)

    def complete(self, start: datetime, window_s: float, lateness_s: float) -> bool:
        """Whether the window starting at `start` is complete."""
        last = self.last_start(window_s, lateness_s)
        return last is not None and start <= last


def host_mark(newest: Sequence[datetime], idle_s: float) -> tuple[datetime | None, int]:
    """The oldest newest-event time among the sources within `idle_s` of the median one,
    and how many sources were left out as idle."""
    if not newest:
        return None, 0
    ordered = sorted(newest)
    median = ordered[(len(ordered) - 1) // 2]
    live = [t for t in ordered if t >= median - timedelta(seconds=idle_s)]
    return live[0], len(ordered) - len(live)


def ingest_floor(sources: Iterable[Source], flush_s: float) -> datetime | None:
    """The oldest, over kinds, of the newest ingest hour seen, minus one writer flush
    interval (None without ingest hours)."""
    newest: dict[str, datetime] = {}
    for s in sources:
        if s.ingest is not None:
            newest[s.kind] = max(newest.get(s.kind, s.ingest), s.ingest)
    if not newest:
        return None
    return min(newest.values()) - timedelta(seconds=flush_s)


def compute(sources: Sequence[Source], idle_s: float, flush_s: float,
            previous: datetime | None = None, basis: str = "hosts") -> Watermark:
    """The watermark of these sources (see the module doc); `basis` names what the sources
    are ("hosts" for ETL clocks, "services" for aggregates alone)."""
    sources = [s for s in sources if EARLIEST <= s.newest < LATEST
               and (s.ingest is None or EARLIEST <= s.ingest < LATEST)]
    mark, idle = host_mark([s.newest for s in sources], idle_s)
    floor = ingest_floor(sources, flush_s)
    best: tuple[datetime, str] | None = None
    for at, why in ((mark, basis), (floor, "ingest"), (previous, "previous")):
        if at is not None and (best is None or at > best[0]):
            best = (at, why)
    if best is None:
        return Watermark(None, "none", len(sources), idle, floor)
    return Watermark(best[0], best[1], len(sources), idle, floor)
