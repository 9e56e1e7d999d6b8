"""One shard of the embedded stream: an append-only log split into segment files.

Only the last segment (the active one) is written. Durability rules:

- appends write frames with one `write()` per batch; `sync()` fdatasyncs the active segment
  and advances the durable watermark. Concurrent callers share one fsync: a caller whose data
  was covered by someone else's fsync returns at once.
- readers only see records below the durable watermark, so a consumer can never commit a
  position that a crash could take back (which would make new records reuse its offsets).
- rolling to a new segment first fsyncs the old one and then the directory, so every sealed
  segment is whole; only the active segment can have a torn tail after a crash.

- every advance of the watermark is published to the shard's frontier file (`frontier.py`)
  so reader processes follow it too.

On open the active segment is scanned and a torn or corrupt tail is cut off (logged and
counted in `recovered_bytes`): a crash can only tear what was written after the last fsync,
and nothing after the last fsync was acknowledged. What is left is fsynced before it counts
as durable (after a process crash it may be whole but not yet on disk). Sealed segments are
checked lazily (see `segment.py`). Reads are in `shard_view.py`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from array import array
from pathlib import Path

from mad.errors import TransientError
from mad.ingest.streams.base import StreamCorruptError
from mad.ingest.streams.embedded import framing
from mad.ingest.streams.embedded.frontier import Frontier, FrontierFile
from mad.ingest.streams.embedded.segment import INDEX_EVERY, Segment
from mad.ingest.streams.embedded.shard_view import ShardView

log = logging.getLogger(__name__)

NAME = re.compile(r"^(\d{20})\.log$")
"""A segment file's name; the group is its base offset."""


class ShardLog(ShardView):
    """The segment files of one shard, with thread-safe appends, syncs and reads."""

    def __init__(self, directory: Path, shard: str, segment_bytes: int) -> None:
        super().__init__(shard)  # self._lock also guards the write position and watermark
        self.recovered_bytes = 0
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._synced_cond = threading.Condition(self._lock)
        self._sync_lock = threading.Lock()  # one fsync or roll at a time; taken before _lock
        self._failed: str | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = self._recover()
        active = self._segments[-1]
        self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND)
        self._next = active.end
        self._frontier = FrontierFile(directory, writable=True)
        with self._lock:
            self._advance(self._next, active.size)

    # -- opening -------------------------------------------------------------------------

    def _recover(self) -> list[Segment]:
        paths = sorted(p for p in self._dir.iterdir() if NAME.match(p.name))
        if not paths:
            return [self._create_segment(0, 0)]
        segments: list[Segment] = []
        start_byte = 0
        for i, path in enumerate(paths):
            base, stat = int(path.stem), path.stat()
            if i < len(paths) - 1:
                count = int(paths[i + 1].stem) - base
                if count <= 0 or stat.st_size == 0:
                    raise StreamCorruptError(f"stream segment {path} is empty or out of order")
                seg = Segment(base, path, stat.st_size, count, start_byte, stat.st_mtime)
            else:
                seg = self._recover_active(base, path, stat.st_size, start_byte, stat.st_mtime)
            segments.append(seg)
            start_byte += seg.size
        return segments

    def _recover_active(
        self, base: int, path: Path, size: int, start_byte: int, mtime: float
    ) -> Segment:
        with path.open("r+b") as f:
            fd = f.fileno()
            found = framing.scan(lambda pos, n: os.pread(fd, n, pos), size, base, INDEX_EVERY)
            if found.problem is not None:
                cut = size - found.valid_end
                log.warning(
                    "stream shard %s: cut %d bytes of torn tail from %s at byte %d (%s)",
                    self.shard,
                    cut,
                    path,
                    found.valid_end,
                    found.problem,
                )
                f.truncate(found.valid_end)
                self.recovered_bytes += cut
            os.fsync(fd)
        return Segment(
            base,
            path,
            found.valid_end,
            found.records,
            start_byte,
            mtime,
            found.index_offsets,
            found.index_positions,
        )

    def _create_segment(self, base: int, start_byte: int) -> Segment:
        path = self._dir / f"{base:020d}.log"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        self._sync_directory()
        offsets, positions = array("q", [base]), array("q", [0])
        return Segment(base, path, 0, 0, start_byte, time.time(), offsets, positions)

    # -- writing -------------------------------------------------------------------------

    def append(self, records: list[tuple[bytes, bytes]], appended_us: int) -> tuple[int, int, bool]:
        """Write `(key, payload)` records (not yet durable: call `sync` or `wait_synced`).

        Returns the first offset, the offset after the last, and whether a segment was rolled.
        A batch never spans two segments.
        """
        starts: array[int] = array("q")
        data = framing.encode(records, appended_us, 0, starts.append)
        with self._lock:
            if not self._needs_roll(len(data)):
                return (*self._write(data, starts), False)
        with self._sync_lock, self._lock:
            rolled = self._needs_roll(len(data))
            if rolled:
                self._roll()
            return (*self._write(data, starts), rolled)

    def _needs_roll(self, nbytes: int) -> bool:
        self._check_usable()
        active = self._segments[-1]
        return active.size > 0 and active.size + nbytes > self._segment_bytes

    def _write(self, data: bytes, starts: array[int]) -> tuple[int, int]:
        active = self._segments[-1]
        view, written = memoryview(data), 0
        try:
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except OSError as err:
            try:
                os.ftruncate(self._fd, active.size)  # leave no half batch for the next one
            except OSError:
                self._fail(f"could not undo a failed write to {active.path}")
            raise TransientError(f"stream shard {self.shard}: write failed: {err}") from err
        first = self._next
        last_indexed = active.index_positions[-1]
        for i, rel in enumerate(starts):
            if active.size + rel - last_indexed >= INDEX_EVERY:
                last_indexed = active.size + rel
                active.index_offsets.append(first + i)
                active.index_positions.append(last_indexed)
        self._next += len(starts)
        active.count += len(starts)
        active.size += len(data)
        active.mtime = time.time()
        return first, self._next

    def _roll(self) -> None:
        """Seal the active segment (fsync) and start a new one. Holds both locks."""
        old = self._segments[-1]
        try:
            os.fsync(self._fd)
        except OSError as err:
            self._fail(f"fsync of {old.path} failed: {err}")
            raise TransientError(f"stream shard {self.shard}: {self._failed}") from err
        os.close(self._fd)
        self._fd = -1
        self._advance(self._next, old.size)
        try:
            new = self._create_segment(self._next, old.start_byte + old.size)
            self._fd = os.open(new.path, os.O_WRONLY | os.O_APPEND)
        except OSError as err:
            self._fail(f"could not start a new segment: {err}")
            raise TransientError(f"stream shard {self.shard}: {self._failed}") from err
        self._segments.append(new)
        self._synced_size = 0

    def sync(self, upto: int | None = None) -> None:
        """Make every offset below `upto` durable (default: all written so far).

        Returns at once if another thread's fsync already covered them; otherwise fsyncs
        everything written by now, which covers the batches of threads queued behind.
        """
        with self._sync_lock:
            with self._lock:
                self._check_usable()
                target_next, target_size = self._next, self._segments[-1].size
                if self._synced_next >= (target_next if upto is None else upto):
                    return
                fd = self._fd  # no roll can close it while we hold _sync_lock
            try:
                os.fdatasync(fd)
            except OSError as err:
                with self._lock:
                    self._fail(f"fsync failed: {err}")
                raise TransientError(f"stream shard {self.shard}: {self._failed}") from err
            with self._lock:
                self._advance(target_next, target_size)

    def wait_synced(self, end: int) -> None:
        """Block until every offset below `end` is durable (another thread does the fsync)."""
        with self._lock:
            while self._synced_next < end:
                self._check_usable()
                self._synced_cond.wait()

    def _advance(self, synced_next: int, synced_size: int) -> None:
        """Move the durable watermark (holding `_lock`, after the fsync) and publish it."""
        self._synced_next, self._synced_size = synced_next, synced_size
        self._synced_cond.notify_all()
        try:
            self._frontier.publish(Frontier(synced_next, self._segments[-1].base, synced_size))
        except OSError as err:  # readers in other processes lag until a publish works
            log.warning("stream shard %s: could not publish the frontier: %s", self.shard, err)

    def _fail(self, reason: str) -> None:
        self._failed = reason
        self._synced_cond.notify_all()

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise TransientError(
                f"stream shard {self.shard} is not writable ({self._failed}); reopen the stream"
            )

    def close(self) -> None:
        """Sync what is written, wake any waiters with an error and close the file."""
        if self._failed is None:
            self.sync()
        with self._sync_lock, self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._fail("closed")
            self._frontier.close()

    # -- reading (see shard_view.py) -----------------------------------------------------

    def _visible(self) -> tuple[list[Segment], int, int]:
        with self._lock:
            return list(self._segments), self._synced_next, self._synced_size

    def _vanished(self, seg: Segment) -> bool:
        return not self.holds(seg)  # delete_oldest drops it from the list before unlinking

    def durable_end(self) -> tuple[int, int]:
        """The offset after the last durable record, and the shard byte position after it."""
        with self._lock:
            return self._synced_next, self._segments[-1].start_byte + self._synced_size

    def sealed(self) -> list[Segment]:
        """The sealed segments, oldest first."""
        with self._lock:
            return self._segments[:-1]

    def delete_oldest(self, seg: Segment) -> None:
        """Delete `seg`, which must be the oldest segment and sealed."""
        with self._lock:
            if len(self._segments) < 2 or self._segments[0] is not seg:
                raise ValueError(f"{seg.path} is not the oldest sealed segment")
            del self._segments[0]
        self._hints = {k: v for k, v in self._hints.items() if v[0] is not seg}
        seg.path.unlink(missing_ok=True)
        self._sync_directory()  # else a crash could bring back this file but not an older one

    def _sync_directory(self) -> None:
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
