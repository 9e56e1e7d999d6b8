"""Reading one shard of the embedded stream: what the owning process's log (`shard_log.py`)
and a reader process's view of it (`shard_reader.py`) have in common.

A subclass keeps `_segments` (oldest first) and says, through `_visible`, how far records
may be read (the durable watermark in the owner, the published frontier in a reader) and,
through `_vanished`, whether a segment whose file is missing was deleted by retention (the
read starts over from what is left) or should be there (corruption). Reads remember where
they ended, so a consumer reading on from there costs no index lookup.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable
from typing import NamedTuple

from mad.ingest.streams.base import Lag, ShardStatus, StreamCorruptError, StreamRecord
from mad.ingest.streams.embedded.segment import Row, Segment


class ShardView(ABC):
    """Thread-safe reads of one shard's segment files."""

    def __init__(self, shard: str) -> None:
        self.shard = shard
        self._lock = threading.Lock()  # the segment list and the visible end
        self._segments: list[Segment] = []
        self._hints: dict[int, tuple[Segment, int]] = {}  # next offset -> where a read ended
        self._cursors: dict[str, Cursor] = {}  # consumer -> its first unconsumed record

    # -- what a subclass provides ---------------------------------------------------------

    @abstractmethod
    def _visible(self) -> tuple[list[Segment], int, int]:
        """The segments, the offset after the last readable record and the readable size of
        the last segment (the others are read whole)."""

    @abstractmethod
    def _vanished(self, seg: Segment) -> bool:
        """`seg`'s file is missing: True if retention deleted it, False if it should exist."""

    def _ended_at(self, seg: Segment, offset: int, pos: int) -> None:
        """A read of `seg` ended before record `offset`, at file position `pos`: a subclass
        may remember it to start the next read there. By default nothing is kept."""
        return None

    @abstractmethod
    def durable_end(self) -> tuple[int, int]:
        """The offset after the last readable record, and the shard byte position after it."""

    # -- shared --------------------------------------------------------------------------

    def start_offset(self) -> int:
        """The offset of the oldest retained record (or of the next one, if none is kept)."""
        with self._lock:
            return self._segments[0].base if self._segments else 0

    def holds(self, seg: Segment) -> bool:
        """Whether `seg` is still part of the log (retention may have deleted it)."""
        return any(s is seg for s in self._segments)

    def disk_bytes(self) -> int:
        """Bytes of all segment files as last known; no system call."""
        return sum(s.size for s in self._segments)

    def segment_count(self) -> int:
        """How many segment files the shard has."""
        return len(self._segments)

    def records(self, after: int | None, limit: int) -> list[StreamRecord]:
        """`read` as the Stream Protocol's records."""
        return [StreamRecord(self.shard, o, k.decode(), p, us / 1e6)
                for o, us, k, p in self.read(after, limit)]

    def read(self, after: int | None, limit: int) -> list[Row]:
        """Readable records after offset `after` as (offset, appended_us, key, payload)."""
        segments, visible, visible_size = self._visible()
        if not segments:
            return []
        start = segments[0].base if after is None else max(after + 1, segments[0].base)
        i = bisect_right([s.base for s in segments], start) - 1
        out: list[Row] = []
        while i < len(segments) and len(out) < limit and start < visible:
            seg, last = segments[i], i == len(segments) - 1
            end_offset = visible if last else seg.end
            if start < end_offset:
                try:
                    rows, pos = seg.read(
                        start,
                        self._position_of(seg, start),
                        end_offset,
                        visible_size if last else seg.size,
                        limit - len(out),
                    )
                except FileNotFoundError:
                    if not self._vanished(seg):
                        raise StreamCorruptError(f"stream segment {seg.path} is missing") from None
                    return out if out else self.read(after, limit)  # retention deleted it
                out += rows
                start += len(rows)
                if len(self._hints) > 64:
                    self._hints.clear()
                self._hints[start] = (seg, pos)
                self._ended_at(seg, start, pos)
            i += 1
        return out

    def locate(self, offset: int) -> tuple[Segment, int, int] | None:
        """The segment, file position and append time (µs) of the record at `offset`; None
        when retention deleted its segment meanwhile (the start offset has moved past it)."""
        with self._lock:
            segments = list(self._segments)
        if not segments or offset < segments[0].base:
            return None
        seg = segments[bisect_right([s.base for s in segments], offset) - 1]
        try:
            pos = self._position_of(seg, offset)
            return seg, pos, seg.append_time_at(offset, pos)
        except FileNotFoundError:
            if not self._vanished(seg):
                raise StreamCorruptError(f"stream segment {seg.path} is missing") from None
            return None

    def lag(self, committed: int | None, consumer: str, now: float) -> Lag:
        """How far `consumer`, which committed `committed`, is behind."""
        durable_next, durable_byte = self.durable_end()
        start = self.start_offset()
        first = start if committed is None else max(committed + 1, start)
        if first >= durable_next:
            return Lag(0, 0, 0.0)
        cursor = self._cursors.get(consumer)
        if cursor is None or cursor.offset != first or not self.holds(cursor.segment):
            found = self.locate(first)
            if found is None:  # retention deleted it meanwhile
                return self.lag(committed, consumer, now)
            cursor = self._cursors[consumer] = Cursor(first, *found)
        nbytes = durable_byte - (cursor.segment.start_byte + cursor.position)
        return Lag(durable_next - first, nbytes, max(0.0, now - cursor.appended_us / 1e6))

    def status(
        self, consumers: list[str], committed: Callable[[str], int | None], now: float
    ) -> ShardStatus:
        """One status row; `committed(consumer)` is a consumer's position on this shard."""
        start, (durable_next, _) = self.start_offset(), self.durable_end()
        return ShardStatus(
            shard=self.shard,
            first=start if durable_next > start else None,
            last=durable_next - 1 if durable_next > start else None,
            committed={c: committed(c) for c in consumers},
            lag={c: self.lag(committed(c), c, now) for c in consumers},
            segments=self.segment_count(),
            disk_bytes=self.disk_bytes(),
        )

    def _position_of(self, seg: Segment, offset: int) -> int:
        hint = self._hints.get(offset)
        if hint is not None and hint[0] is seg:
            return hint[1]
        return seg.position_of(offset)


class Cursor(NamedTuple):
    """Where a consumer's first unconsumed record is, cached so lag costs no I/O."""

    offset: int
    segment: Segment
    position: int
    appended_us: int
