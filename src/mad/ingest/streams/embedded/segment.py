"""One segment file of the embedded log: what is known about it and how to read it.

A segment is `{base offset:020d}.log`, the base offset being the position of its first
record. Each keeps a sparse in-memory index (record offset -> file position, one entry per
`INDEX_EVERY` bytes) so a read starts at most that far from its record. The active segment's
index is filled as records are written; a sealed segment's is built on first use by a scan
that checks every CRC, so a bad record in a sealed segment is reported the first time anyone
reads near it. A sealed segment is whole by construction (see `shard_log.py`), so a bad
record there is corruption, never a torn write: it raises StreamCorruptError naming the
file, byte and record offset, and the data is not skipped silently.
"""

from __future__ import annotations

import os
import threading
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from mad.ingest.streams.base import StreamCorruptError
from mad.ingest.streams.embedded import framing

INDEX_EVERY = 16 * 1024
"""Bytes between sparse index entries: a lookup hops over at most this much of a segment."""
READ_CHUNK = 1024 * 1024

Row = tuple[int, int, bytes, bytes]
"""A record as read from a segment: (offset, appended_us, key, payload)."""


@dataclass(eq=False)
class Segment:
    """One segment file. `start_byte` is where it starts in the shard's byte stream (lag in
    bytes is a difference of two such positions); `count` and `size` grow while it is active."""

    base: int
    path: Path
    size: int
    count: int
    start_byte: int
    mtime: float
    index_offsets: array[int] = field(default_factory=lambda: array("q"))
    index_positions: array[int] = field(default_factory=lambda: array("q"))
    index_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def end(self) -> int:
        """The offset after the segment's last record."""
        return self.base + self.count

    def corrupt(self, offset: int, pos: int, reason: str) -> StreamCorruptError:
        """The error for a bad record at file position `pos`."""
        return StreamCorruptError(
            f"stream: bad record {offset} at byte {pos} of {self.path} ({reason}); records "
            f"{offset}..{self.end - 1} of that segment cannot be read. Move the file aside to "
            "skip them (they are lost) or restore it from a backup."
        )

    def read(
        self, offset: int, pos: int, end_offset: int, end_pos: int, limit: int
    ) -> tuple[list[Row], int]:
        """Up to `limit` records from `offset` (at file position `pos`), stopping before
        `end_offset` or file position `end_pos`; returns them and the file position after."""
        out: list[Row] = []
        fd = os.open(self.path, os.O_RDONLY)
        try:
            while len(out) < limit and offset < end_offset and pos < end_pos:
                want = min(READ_CHUNK, end_pos - pos)
                buf = os.pread(fd, want, pos)
                rows, stop = framing.decode_many(buf, 0, min(limit - len(out), end_offset - offset))
                out += [(offset + i, us, key, payload) for i, (us, key, payload) in enumerate(rows)]
                offset, pos = offset + len(rows), pos + stop
                if rows or len(out) >= limit or offset >= end_offset:
                    continue
                try:  # nothing decoded: find out why
                    framing.decode(buf, 0)
                except framing.FrameError as err:
                    if err.needed is None or pos + err.needed > end_pos or len(buf) >= err.needed:
                        raise self.corrupt(offset, pos, err.reason) from None
                    buf = os.pread(fd, err.needed, pos)  # one record larger than a chunk
                    frame = framing.decode(buf, 0)
                    out.append((offset, frame.appended_us, frame.key, frame.payload))
                    offset, pos = offset + 1, pos + frame.end
                else:
                    raise self.corrupt(offset, pos, "frame does not decode")
        finally:
            os.close(fd)
        return out, pos

    def position_of(self, offset: int) -> int:
        """The file position of the record at `offset`, which must be in this segment."""
        if offset == self.base:
            return 0  # reading a segment from its start needs no index (reads check CRCs)
        self.load_index()
        offsets, positions = self.index_offsets, self.index_positions
        j = bisect_right(offsets, offset, 0, min(len(offsets), len(positions))) - 1
        at, pos = offsets[j], positions[j]
        if at == offset:
            return pos
        fd = os.open(self.path, os.O_RDONLY)
        try:
            while at < offset:  # hop over frames by their length fields
                head = os.pread(fd, framing.HEAD.size, pos)
                if len(head) < framing.HEAD.size:
                    raise self.corrupt(at, pos, "file ends inside an indexed range")
                pos += framing.HEAD.size + framing.HEAD.unpack(head)[0]
                at += 1
        finally:
            os.close(fd)
        return pos

    def append_time_at(self, offset: int, pos: int) -> int:
        """The append time (µs) of the record at file position `pos`."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            head = os.pread(fd, framing.HEADER_SIZE, pos)
        finally:
            os.close(fd)
        if len(head) < framing.HEADER_SIZE:
            raise self.corrupt(offset, pos, "header cut short")
        appended_us: int = framing.BODY_HEAD.unpack_from(head, framing.HEAD.size)[0]
        return appended_us

    def load_index(self) -> None:
        """Scan a sealed segment once, checking every CRC, to build its sparse index."""
        if len(self.index_offsets):
            return
        with self.index_lock:
            if len(self.index_offsets):
                return
            fd = os.open(self.path, os.O_RDONLY)
            try:
                found = framing.scan(
                    lambda p, n: os.pread(fd, n, p), self.size, self.base, INDEX_EVERY
                )
            finally:
                os.close(fd)
            if found.problem is not None or found.records != self.count:
                problem = found.problem or f"{found.records} records, expected {self.count}"
                raise self.corrupt(self.base + found.records, found.valid_end, problem)
            self.index_positions.extend(found.index_positions)
            self.index_offsets.extend(found.index_offsets)
