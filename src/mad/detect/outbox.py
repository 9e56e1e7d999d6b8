"""Delivery of committed incident changes (the outbox in the state database) to alert sinks.

The pipeline commits each batch's incident changes to `detect_outbox` in the same
transaction as the incidents, then calls `deliver()`. An alert leaves the outbox once every
sink has it in the sent log (a sink takes it at least once; its dedup key lets the receiver
drop a repeat after a crash). A sink that failed is not tried again until `new_pass()`: a
webhook that is down would otherwise cost its retries after every batch. A change that
operators silenced (`mad.detect.operator.StateSilencer`, on the same database) leaves the
outbox unsent.
"""

from __future__ import annotations

import logging

from mad.detect.alerts import Dispatcher, Silencer
from mad.detect.codec import change_from_dict
from mad.detect.operator import StateSilencer
from mad.state import DetectStore

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, db: DetectStore, dispatcher: Dispatcher,
                 silencer: Silencer | None = None) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.silencer = silencer if silencer is not None else StateSilencer(db.engine)
        self.down: set[str] = set()  # sinks that failed since `new_pass`

    def new_pass(self) -> None:
        self.down = set()

    def deliver(self) -> tuple[int, int]:
        """Send what is waiting; returns (deliveries made, alerts still waiting)."""
        pending = self.db.pending_alerts()
        if not pending:
            return 0, 0
        changes = []
        for key, payload in pending:
            try:
                changes.append(change_from_dict(payload))
            except (KeyError, TypeError, ValueError) as err:
                log.error("alert %s in the outbox cannot be read (%s); it stays there", key, err)
        sinks = list(self.dispatcher.sinks)
        sent = self.dispatcher.sent
        healthy = [s for s in sinks if s.name not in self.down]
        delivered = 0
        silenced: dict[str, str] = {}
        if healthy:
            dispatcher = Dispatcher(healthy, sent, self.silencer)
            delivered = dispatcher.dispatch(changes)
            silenced = dispatcher.silenced
            self.down |= {f.sink for f in dispatcher.failures}
        done = [c.dedup_key for c in changes if c.dedup_key in silenced
                or all(sent.seen(f"{s.name}:{c.dedup_key}") for s in sinks)]
        self.db.delivered(done)
        return delivered, len(pending) - len(done)
