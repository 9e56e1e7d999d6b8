"""The embedded stream: a durable, segmented, append-only log in a local directory.

No server: the ingest process owns the directory (an exclusive lock file stops a second
process from opening it). Layout:

    {path}/LOCK                   held with flock while open
    {path}/state.sqlite           consumer checkpoints, drop counters, shard count
    {path}/shard-{i}/{base}.log   segment files, see `shard_log.py`, `segment.py`, `framing.py`

Records go to shard `crc32(key) % shards` (one shard by default), so order per key is kept.
Positions are record offsets, contiguous per shard. Reads return only durable records.

fsync policy (`fsync=`):
- `every_batch`: the appending thread fsyncs before `append` returns. Threads appending at
  the same time share fsyncs: whoever syncs covers everything written before it.
- `interval_ms=N`: group commit. A background thread fsyncs at most once per N ms, so an
  unsynced write waits at most N ms (plus the fsync) for it; `append` blocks until an fsync
  covers its batch, so an acknowledgement still means durable, and many concurrent batches
  pay for one fsync. Fewer fsyncs, but a single appending thread waits longer per batch:
  this policy pays off with several appending threads.

Retention (`retention.py`): a sealed segment is deleted once every named consumer (given as
`consumers=`, or that ever committed) has committed past its last record AND it is older
than `retention_seconds` or the stream is over `retention_bytes`. With no named consumer
nothing counts as consumed. Unconsumed data is deleted only to stay under `max_bytes`, and
is counted; a consumer whose records were dropped resumes at the oldest one kept. The active
segment is never deleted, so budgets hold to within one segment. Retention runs after every
commit and segment roll, and on `apply_retention()`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from mad.errors import ConfigError, TerminalError, TransientError
from mad.ingest.streams import framing
from mad.ingest.streams.base import (
    Ack,
    Lag,
    Position,
    ShardStatus,
    StreamRecord,
    StreamStatus,
    register_stream,
)
from mad.ingest.streams.checkpoints import StateStore
from mad.ingest.streams.retention import Retention
from mad.ingest.streams.segment import Segment
from mad.ingest.streams.shard_log import ShardLog

log = logging.getLogger(__name__)

MAX_RECORD = framing.MAX_FRAME - framing.BODY_HEAD.size


class _Cursor(NamedTuple):
    """Where a consumer's first unconsumed record is, cached so lag costs no I/O."""

    offset: int
    segment: Segment
    position: int
    appended_us: int


def parse_fsync(policy: str) -> float | None:
    """`every_batch` -> None; `interval_ms=N` -> N / 1000 seconds."""
    name, _, value = policy.partition("=")
    if policy == "every_batch":
        return None
    if name == "interval_ms" and value.isdigit() and int(value) > 0:
        return int(value) / 1000
    raise ConfigError(
        f"stream fsync policy must be 'every_batch' or 'interval_ms=N', got {policy!r}"
    )


@register_stream("embedded")
class EmbeddedStream:
    """A `Stream` kept in local segment files; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        shards: int = 1,
        fsync: str = "every_batch",
        segment_bytes: int = 64 * 1024 * 1024,
        retention_seconds: float | None = 24 * 3600,
        retention_bytes: int | None = None,
        max_bytes: int | None = None,
        consumers: Iterable[str] = (),
    ) -> None:
        if shards < 1 or segment_bytes < 1024:
            raise ConfigError("stream needs shards >= 1 and segment_bytes >= 1024")
        self.path = Path(path)
        self._interval = parse_fsync(fsync)
        self._fsync, self._segment_bytes = fsync, segment_bytes
        self._retention = Retention(retention_seconds, retention_bytes, max_bytes)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_directory(self.path)
        store: StateStore | None = None
        self._logs: list[ShardLog] = []
        try:
            self._store = store = StateStore(self.path / "state.sqlite")
            stored = int(self._store.meta("shards", str(shards)))
            if stored != shards:
                raise ConfigError(
                    f"stream at {self.path} has {stored} shards, settings ask for {shards}; "
                    "keys would move between shards. Use the stored count or a new path."
                )
            for i in range(shards):
                self._logs.append(ShardLog(self.path / f"shard-{i}", str(i), segment_bytes))
        except BaseException:
            for lg in self._logs:
                lg.close()
            if store is not None:
                store.close()
            os.close(self._lock_fd)
            raise
        self._committed = self._store.checkpoints()
        self._consumers = frozenset(consumers) | {c for c, _ in self._committed}
        self._cursors: dict[tuple[str, str], _Cursor] = {}
        self._commit_lock = threading.Lock()
        self._retention_lock = threading.Lock()
        self._closed = threading.Event()
        self._dirty = threading.Event()
        self._flusher: threading.Thread | None = None
        if self._interval is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="stream-fsync", daemon=True
            )
            self._flusher.start()

    # -- Stream protocol -----------------------------------------------------------------

    def shards(self) -> list[str]:
        return [lg.shard for lg in self._logs]

    def append(self, records: Sequence[tuple[str, bytes]]) -> list[Ack]:
        if self._closed.is_set():
            raise TransientError(f"stream at {self.path} is closed")
        if not records:
            return []
        appended_us = time.time_ns() // 1000
        groups: dict[int, list[int]] = {}
        encoded = [(key.encode(), payload) for key, payload in records]
        largest = max(len(key) + len(payload) for key, payload in encoded)
        if largest > MAX_RECORD or max(len(key) for key, _ in encoded) > 0xFFFF:
            raise TerminalError(
                f"stream record too large ({largest} bytes; at most {MAX_RECORD} bytes "
                "and a key of at most 65535 bytes)"
            )
        n = len(self._logs)
        if n == 1:
            groups[0] = list(range(len(encoded)))
        else:
            for i, (key, _) in enumerate(encoded):
                groups.setdefault(zlib.crc32(key) % n, []).append(i)
        acks: list[Ack] = [Ack("", 0)] * len(records)
        ends: list[tuple[ShardLog, int]] = []
        rolled = False
        for shard, indexes in groups.items():
            shard_log = self._logs[shard]
            batch = encoded if n == 1 else [encoded[i] for i in indexes]
            first, end, did_roll = shard_log.append(batch, appended_us)
            rolled |= did_roll
            ends.append((shard_log, end))
            for k, i in enumerate(indexes):
                acks[i] = Ack(shard_log.shard, first + k)
        if self._interval is None:
            for shard_log, end in ends:
                shard_log.sync(end)
        else:
            self._dirty.set()
            for shard_log, end in ends:
                shard_log.wait_synced(end)
        if rolled:
            self.apply_retention()
        return acks

    def read(self, shard: str, after: Position | None, limit: int) -> list[StreamRecord]:
        rows = self._log(shard).read(after, limit)
        return [StreamRecord(shard, o, k.decode(), p, us / 1e6) for o, us, k, p in rows]

    def commit(self, consumer: str, shard: str, position: Position) -> None:
        durable_next, _ = self._log(shard).durable_end()
        if not 0 <= position < durable_next:
            raise TerminalError(
                f"cannot commit position {position} on stream shard {shard}: "
                f"readable positions end at {durable_next - 1}"
            )
        with self._commit_lock:
            self._store.save_checkpoint(consumer, shard, position)
            self._committed[(consumer, shard)] = position
            self._consumers = self._consumers | {consumer}
        self.apply_retention()

    def committed(self, consumer: str, shard: str) -> Position | None:
        self._log(shard)
        return self._committed.get((consumer, shard))

    def lag(self, consumer: str) -> dict[str, Lag]:
        now = time.time()
        return {lg.shard: self._lag(consumer, lg, now) for lg in self._logs}

    def status(self) -> StreamStatus:
        now = time.time()
        consumers = sorted(self._consumers)
        rows = []
        for lg in self._logs:
            start, (durable_next, _) = lg.start_offset(), lg.durable_end()
            rows.append(
                ShardStatus(
                    shard=lg.shard,
                    first=start if durable_next > start else None,
                    last=durable_next - 1 if durable_next > start else None,
                    committed={c: self._committed.get((c, lg.shard)) for c in consumers},
                    lag={c: self._lag(c, lg, now) for c in consumers},
                    segments=lg.segment_count(),
                    disk_bytes=lg.disk_bytes(),
                )
            )
        dropped_records, dropped_bytes = self._store.dropped()
        settings: dict[str, object] = {
            "path": str(self.path),
            "fsync": self._fsync,
            "segment_bytes": self._segment_bytes,
            "retention_seconds": self._retention.seconds,
            "retention_bytes": self._retention.bytes,
            "max_bytes": self._retention.max_bytes,
        }
        return StreamStatus(
            "embedded",
            rows,
            self.disk_bytes(),
            dropped_records,
            dropped_bytes,
            sum(lg.recovered_bytes for lg in self._logs),
            settings,
        )

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._dirty.set()
        if self._flusher is not None:
            self._flusher.join()
        for lg in self._logs:
            try:
                lg.close()
            except TransientError as err:  # a failed shard: nothing more can be made durable
                log.warning("%s", err)
        self._store.close()
        os.close(self._lock_fd)

    # -- embedded extras -----------------------------------------------------------------

    def disk_bytes(self) -> int:
        """Bytes of all segment files, from memory (no system call): cheap per request."""
        return sum(lg.disk_bytes() for lg in self._logs)

    def apply_retention(self) -> int:
        """Delete segments that retention allows; returns how many. Runs after each commit
        and segment roll, and may be called on a timer for age-based retention."""
        with self._retention_lock:
            return self._retention.apply(self._logs, self._consumed_up_to, self._store)

    # -- helpers ---------------------------------------------------------------------------

    def _consumed_up_to(self, shard: str) -> int:
        """The highest position every named consumer has committed on `shard` (-1: none)."""
        positions = [self._committed.get((c, shard), -1) for c in self._consumers]
        return min(positions, default=-1)

    def _lag(self, consumer: str, lg: ShardLog, now: float) -> Lag:
        durable_next, durable_byte = lg.durable_end()
        committed = self._committed.get((consumer, lg.shard))
        start = lg.start_offset()
        first = start if committed is None else max(committed + 1, start)
        if first >= durable_next:
            return Lag(0, 0, 0.0)
        key = (consumer, lg.shard)
        cursor = self._cursors.get(key)
        if cursor is None or cursor.offset != first or not lg.holds(cursor.segment):
            try:
                cursor = _Cursor(first, *lg.locate(first))
            except FileNotFoundError:
                if lg.start_offset() <= first:
                    raise
                return self._lag(consumer, lg, now)  # retention deleted it meanwhile
            self._cursors[key] = cursor
        nbytes = durable_byte - (cursor.segment.start_byte + cursor.position)
        return Lag(durable_next - first, nbytes, max(0.0, now - cursor.appended_us / 1e6))

    def _log(self, shard: str) -> ShardLog:
        try:
            return self._logs[int(shard)]
        except (ValueError, IndexError):
            raise TerminalError(f"no shard {shard!r} in stream {self.path}") from None

    def _flush_loop(self) -> None:
        """Group commit: fsync whatever is written, at most once per interval. After an idle
        spell the first write is synced at once; under load syncs run back to back, each
        covering every batch written while the previous one ran."""
        interval, last = self._interval or 0.0, 0.0
        while not self._closed.is_set():
            self._dirty.wait()
            delay = last + interval - time.monotonic()
            if delay > 0:
                self._closed.wait(delay)
            self._dirty.clear()
            last = time.monotonic()
            for lg in self._logs:
                try:
                    lg.sync()
                except TransientError as err:  # the shard is marked failed; waiters get it
                    log.error("%s", err)

    def __enter__(self) -> EmbeddedStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _lock_directory(path: Path) -> int:
    fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TerminalError(f"stream at {path} is already open in another process") from None
    return fd
