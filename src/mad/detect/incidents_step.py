"""With `detect.shards` > 1: the one step that turns every shard's anomalies into incidents.

Incidents group anomalies across series, so the tracker must see each window start's
anomalies of every shard together, in window order. Each shard commits, with its batch, what
it scored per window start (`detect_handoff`: its anomalies, `[]` when none) and how far it is
complete (`complete:<window>:s<k>of<N>`). The worker holding the lease
`detect:<window>:incidents` (any of them; taken over like a shard's) feeds the tracker every
window start up to the least "complete to" over all shards, exactly as one unsharded runner
does per batch (observe that start's anomalies, then advance the clock to its end), and saves
the tracker, how far it has fed, the incidents and their changes (the alert outbox) in one
transaction. A shard's replay after a takeover rewrites the same rows (detectors are
deterministic) at or before what was fed, and they are not fed again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import groupby

from mad import lake
from mad.config import DetectSettings
from mad.detect.codec import anomaly_from_dict, change_to_dict, parse_time
from mad.detect.incidents import IncidentTracker
from mad.detect.lease import DetectLease
from mad.detect.model import Incident, IncidentChange
from mad.detect.outbox import Outbox
from mad.detect.shards import incidents_lease
from mad.state import DetectStore
from mad.state.leases import LeaseStore

log = logging.getLogger(__name__)


def complete_key(window: str, shard: int, shards: int) -> str:
    """The meta document of how far a shard is complete."""
    return f"complete:{window}:{lake.shard_name(shard, shards)}"


def step_key(window: str, shards: int) -> str:
    return f"incidents:{window}:of{shards}"


class IncidentStep:
    def __init__(self, db: DetectStore, leases: LeaseStore, owner: str, cfg: DetectSettings,
                 step: timedelta, outbox: Outbox, ttl_s: float) -> None:
        self.db, self.cfg, self.step, self.outbox = db, cfg, step, outbox
        self.lease = DetectLease(leases, incidents_lease(cfg.window), ttl_s, owner=owner)
        self.tracker: IncidentTracker | None = None
        self.fed_to: datetime | None = None

    def run(self) -> int:
        """Feed what every shard completed since the last call, if this worker holds the
        step; returns the incident changes committed."""
        if self.lease.try_hold() is not None:
            self.tracker = None  # another worker feeds; reload if this one takes over
            return 0
        try:
            return self._feed()
        except BaseException:
            self.tracker = None  # the next call resumes from what was committed
            raise

    def release(self) -> None:
        self.lease.release()

    def complete_to(self) -> datetime | None:
        """The least "complete to" over every shard (None while one has not reported)."""
        n, window = self.cfg.shards, self.cfg.window
        docs = self.db.load_meta_under(f"complete:{window}:")
        marks = [parse_time(doc["to"]) if isinstance(doc.get("to"), str) else None
                 for doc in (docs.get(complete_key(window, k, n), {}) for k in range(n))]
        return None if any(m is None for m in marks) else min(m for m in marks if m)

    def _load(self) -> IncidentTracker:
        fresh = IncidentTracker(self.cfg.incident_gap_s, self.cfg.resolve_after_s,
                                self.cfg.confirm_windows, self.cfg.confirm_score)
        doc = self.db.load_meta(step_key(self.cfg.window, self.cfg.shards))
        if doc is None:
            self.fed_to = None
            return fresh
        self.fed_to = parse_time(doc["fed_to"]) if doc.get("fed_to") else None
        return IncidentTracker.from_state(doc["tracker"]).configured_as(fresh)

    def _feed(self) -> int:
        if self.tracker is None:
            self.tracker = self._load()
        tracker = self.tracker
        to = self.complete_to()
        if to is None or (self.fed_to is not None and to <= self.fed_to):
            return 0
        window, n = self.cfg.window, self.cfg.shards
        rows = self.db.handoff(window, n, self.fed_to, to)
        changes: list[IncidentChange] = []
        for start, group in groupby(rows, key=lambda h: h.window_start):
            found = [anomaly_from_dict(a) for h in group for a in h.anomalies]
            changes += tracker.observe(found)
            changes += tracker.advance(start + self.step)
        incidents: dict[str, Incident] = {c.incident.id: c.incident for c in changes}
        incidents.update({i.id: i for i in tracker.open_incidents()})
        self.lease.hold()
        self.db.commit(window, [], {step_key(window, n): {"tracker": tracker.state(),
                                                          "fed_to": to.isoformat()}},
                       incidents.values(), [(c.dedup_key, change_to_dict(c)) for c in changes])
        self.fed_to = to
        self.db.prune_handoff(window, n, to)
        if changes:
            log.info("incidents: fed %d window starts up to %s, %d changes",
                     len({h.window_start for h in rows}), to.isoformat(), len(changes))
        return len(changes)
