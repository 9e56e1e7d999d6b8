"""The ingest API's acknowledgements, counted per stream shard and append hour.

Every record the API appends and acknowledges (an accepted event, or the error envelope of
rejected ones) is counted in memory under `(shard, hour of its append)`, with the highest
position; about once a second, and when the API stops, the counts are added to the state
database (`mad.state.IngestAcks`), where the ETL's reconciliation compares them with the
stream records the raw writer landed (`mad.quality.reconcile`). A state database that cannot
take them keeps them in memory and is tried again a second later; counts are only added,
never replaced, so an API killed before its next flush under-counts by at most its last
second (the raw lake may then hold more than was counted, never less without a loss).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from mad.ingest.streams import Ack
from mad.state import IngestAcks

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0


class AckCounter:
    def __init__(self, open_acks: Callable[[], IngestAcks]) -> None:
        self._open = open_acks
        self._store: IngestAcks | None = None
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], tuple[int, int]] = {}
        self.failing: str | None = None  # why the last flush failed; None once one worked

    def add(self, acks: Sequence[Ack]) -> None:
        with self._lock:
            for ack in acks:
                key = (ack.shard, int(ack.appended_at) // 3600 * 3600)
                records, last = self._pending.get(key, (0, ack.position))
                self._pending[key] = (records + 1, max(last, ack.position))

    @property
    def pending(self) -> int:
        """Acknowledged records not yet in the state database."""
        with self._lock:
            return sum(n for n, _ in self._pending.values())

    def flush(self) -> bool:
        """Add the counts to the state database; True when nothing is left waiting."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return True
        try:
            if self._store is None:
                self._store = self._open()
            self._store.add(batch)
        except Exception as err:  # kept, and tried again with the next flush
            with self._lock:
                for key, (n, last) in batch.items():
                    records, top = self._pending.get(key, (0, last))
                    self._pending[key] = (records + n, max(top, last))
            first = self.failing is None
            self.failing = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            if first:
                log.warning("ingest API: cannot record acknowledgement counts in the state "
                            "database (%s); kept in memory and retried", self.failing)
            return False
        if self.failing is not None:
            log.warning("ingest API: acknowledgement counts are recorded again")
        self.failing = None
        return True
