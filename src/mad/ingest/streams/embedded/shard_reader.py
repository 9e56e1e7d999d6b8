"""One shard of the embedded stream as seen from a reader process.

The reader never writes and never takes the lock. It follows the owner's published frontier
(`frontier.py`): records below it are durable, so it reads nothing a crash of the owner
could take back. Its picture of the segment files is rebuilt from the directory when the
frontier names a segment it does not know (the owner rolled) and when a file it knows is
gone (retention deleted it: only ever the oldest, fully consumed segments; a file missing
anywhere else is corruption). Files newer than the frontier's segment are ignored until the
frontier reaches them.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mad.ingest.streams.base import StreamCorruptError
from mad.ingest.streams.embedded.frontier import Frontier, FrontierFile
from mad.ingest.streams.embedded.segment import INDEX_EVERY, Segment
from mad.ingest.streams.embedded.shard_log import NAME
from mad.ingest.streams.embedded.shard_view import ShardView

log = logging.getLogger(__name__)

_RESCANS = 20
"""Directory listings to try when files change under the listing (rolls, retention)."""


class _StaleFrontier(FileNotFoundError):
    """The frontier's segment is gone but newer ones exist: the frontier is out of date."""


class ShardReader(ShardView):
    """Read-only view of one shard directory that follows the owner's frontier."""

    def __init__(self, directory: Path, shard: str) -> None:
        super().__init__(shard)
        self._dir = directory
        self._frontier = FrontierFile(directory, writable=False)
        self._front: Frontier | None = None

    def refresh(self) -> None:
        """Re-read the frontier and list the directory again (for `status`)."""
        with self._lock:
            self._follow(rescan=True)

    def close(self) -> None:
        """Close the frontier file."""
        self._frontier.close()

    # -- ShardView -----------------------------------------------------------------------

    def _visible(self) -> tuple[list[Segment], int, int]:
        with self._lock:
            self._follow()
            if self._front is None or not self._segments:
                return [], 0, 0
            return list(self._segments), self._front.next, self._front.size

    def durable_end(self) -> tuple[int, int]:
        with self._lock:
            self._follow()
            if self._front is None or not self._segments:
                return self._start_locked(), 0
            return self._front.next, self._segments[-1].start_byte + self._front.size

    def _vanished(self, seg: Segment) -> bool:
        with self._lock:
            self._follow(rescan=True)
            return not self.holds(seg)

    def _ended_at(self, seg: Segment, offset: int, pos: int) -> None:
        """Grow the sparse index of a segment the owner is still appending to, so a lookup
        far into it does not hop frame by frame from the last entry."""
        with seg.index_lock:
            offsets, positions = seg.index_offsets, seg.index_positions
            if (
                len(offsets) == len(positions) > 0
                and offset > offsets[-1]
                and pos - positions[-1] >= INDEX_EVERY
            ):
                positions.append(pos)
                offsets.append(offset)

    def _start_locked(self) -> int:
        """`start_offset` for a caller holding the lock."""
        return self._segments[0].base if self._segments else 0

    # -- following the owner -------------------------------------------------------------

    def _follow(self, rescan: bool = False) -> None:
        """Take in the published frontier (holding the lock)."""
        front = self._frontier.load() or self._front
        if front is None:
            return
        old = self._front
        if old is not None and front.next < old.next:
            log.error(
                "stream shard %s: the frontier went back from %d to %d (was %s restored or "
                "replaced?); rebuilding the view",
                self.shard,
                old.next,
                front.next,
                self._dir,
            )
            self._segments, self._hints, self._cursors = [], {}, {}
            rescan = True
        same_segment = bool(self._segments) and self._segments[-1].base == front.base
        if same_segment and not rescan:
            active = self._segments[-1]
            active.size, active.count = front.size, front.next - front.base
            self._front = front
            return
        stale = False
        for _ in range(_RESCANS):
            try:
                self._segments = self._list(front)
                self._front = front
                return
            except FileNotFoundError as err:  # a file went away while listing: look again
                stale = isinstance(err, _StaleFrontier)
                front = self._frontier.load() or front
        if not stale:
            raise StreamCorruptError(f"stream shard {self._dir}: segment {front.base} is missing")
        # Only newer segments are left: the frontier file is older than the data (possible
        # after a machine crash, it is never fsynced). Nothing is readable until the owner
        # publishes again.
        if self._segments or self._front != front:
            log.warning("stream shard %s: waiting for the owner to publish a frontier", self.shard)
        self._segments, self._front = [], front

    def _list(self, front: Frontier) -> list[Segment]:
        """The segments up to the frontier's, reusing what is already known of them."""
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return []
        every = sorted(int(m.group(1)) for m in map(NAME.match, names) if m)
        bases = [b for b in every if b <= front.base]
        if not bases or bases[-1] != front.base:
            missing = self._dir / f"{front.base:020d}.log"
            newer = bool(every) and every[-1] > front.base
            raise _StaleFrontier(missing) if newer else FileNotFoundError(missing)
        known = {s.base: s for s in self._segments}
        gone = sorted(b for b in known if b not in set(bases))
        if gone and gone[-1] > bases[0]:
            raise StreamCorruptError(
                f"stream shard {self._dir}: segments {gone} are missing but newer ones exist"
            )
        out: list[Segment] = []
        start_byte = 0
        for i, base in enumerate(bases):
            seg = known.get(base)
            path = self._dir / f"{base:020d}.log"
            if base == front.base:
                if seg is None:  # its index starts at its first record and grows with reads
                    count, now = front.next - base, time.time()
                    seg = Segment(base, path, front.size, count, start_byte, now)
                    seg.index_positions.append(0)
                    seg.index_offsets.append(base)
                else:
                    seg.size, seg.count = front.size, front.next - base
            else:
                count = bases[i + 1] - base
                if seg is None or seg.count != count:  # new, or was active and is now sealed
                    stat = os.stat(path)
                    if seg is None:
                        seg = Segment(base, path, stat.st_size, count, start_byte, stat.st_mtime)
                    else:
                        seg.size, seg.count = stat.st_size, count
            out.append(seg)
            start_byte = seg.start_byte + seg.size
        return out
