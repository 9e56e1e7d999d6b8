"""Which segments of the embedded stream may be deleted, and deleting them.

Two rules, applied in order:

1. Consumed data: a sealed segment goes once every named consumer has committed past its
   last record AND it is older than `seconds` (by its last write) or the stream is over
   `bytes`. Oldest first per shard; a segment that fails the test keeps the newer ones too.
2. Disk budget: while the stream is over `max_bytes`, the oldest sealed segment of any shard
   goes even if unconsumed; its unconsumed records and bytes are counted in the state store
   and logged, so the loss is visible in `mad ingest status`.

Active segments are never deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mad.ingest.streams.embedded.checkpoints import StateStore
from mad.ingest.streams.embedded.segment import Segment
from mad.ingest.streams.embedded.shard_log import ShardLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """Retention settings; None turns a rule off."""

    seconds: float | None = 24 * 3600
    bytes: int | None = None
    max_bytes: int | None = None

    def apply(
        self, logs: Sequence[ShardLog], consumed_up_to: Callable[[str], int], store: StateStore
    ) -> int:
        """Delete what the rules allow; `consumed_up_to(shard)` is the highest position every
        named consumer has committed (-1 if any has not). Returns how many segments went."""
        deleted, now = 0, time.time()

        def disk_bytes() -> int:
            return sum(lg.disk_bytes() for lg in logs)

        for lg in logs:
            floor = consumed_up_to(lg.shard)
            for seg in lg.sealed():
                over = self.bytes is not None and disk_bytes() > self.bytes
                old = self.seconds is not None and now - seg.mtime >= self.seconds
                if seg.end - 1 > floor or not (old or over):
                    break
                lg.delete_oldest(seg)
                deleted += 1
        while self.max_bytes is not None and disk_bytes() > self.max_bytes:
            oldest = [(lg.sealed()[0], lg) for lg in logs if lg.segment_count() > 1]
            if not oldest:
                break
            seg, lg = min(oldest, key=lambda pair: pair[0].mtime)
            self._drop(lg, seg, consumed_up_to(lg.shard), store)
            deleted += 1
        return deleted

    def _drop(self, lg: ShardLog, seg: Segment, floor: int, store: StateStore) -> None:
        """Delete a segment that may still hold unconsumed records, counting what is lost."""
        first = max(seg.base, floor + 1)
        records = max(0, seg.end - first)
        if records:
            nbytes = seg.size if first == seg.base else seg.size - seg.position_of(first)
            store.add_dropped(lg.shard, records, nbytes)
            log.warning(
                "stream over max_bytes=%d: dropped %d unconsumed records (%d bytes) of shard %s",
                self.max_bytes,
                records,
                nbytes,
                lg.shard,
            )
        lg.delete_oldest(seg)
