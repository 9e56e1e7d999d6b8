"""The embedded stream opened by its owner: the one process that appends.

The owner holds the directory's exclusive lock (a second owner gets TerminalError); readers
in other processes use `reader.py`. Records go to shard `crc32(key) % shards` (one shard by
default), so order per key is kept. Positions are record offsets, contiguous per shard.
Reads return only durable records.

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
commit and segment roll, when `lag`/`status`/`committed` notice a commit made by another
process (checkpoints are re-read at most every `checkpoint_ttl` seconds), on
`apply_retention()` (which re-reads them first), and every `retention_interval` seconds on
the owner's own timer (`sweeper.py`), so segments of a quiet stream still age out.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

from mad.errors import ConfigError, TerminalError, TransientError
from mad.ingest.streams.base import (
    Ack,
    ClosesOnExit,
    Lag,
    Position,
    StreamRecord,
    StreamStatus,
    check_commit_position,
)
from mad.ingest.streams.embedded import framing
from mad.ingest.streams.embedded.checkpoints import Checkpoints, StateStore, check_shard_count
from mad.ingest.streams.embedded.retention import Retention
from mad.ingest.streams.embedded.shard_log import ShardLog
from mad.ingest.streams.embedded.sweeper import Sweeper

log = logging.getLogger(__name__)

MAX_RECORD = framing.MAX_FRAME - framing.BODY_HEAD.size
RETENTION_INTERVAL_S = 60.0
"""How often the owner applies retention on its own (segments age while nothing happens)."""


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


class EmbeddedStream(ClosesOnExit):
    """A `Stream` (and `StreamMonitor`) kept in local segment files, opened by its owner; see
    the module docstring. `retention_interval=None` turns the retention timer off."""

    appends_checked = True
    shared = False

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
        checkpoint_ttl: float = 0.5,
        retention_interval: float | None = RETENTION_INTERVAL_S,
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
            check_shard_count(self._store, self.path, shards)
            for i in range(shards):
                self._logs.append(ShardLog(self.path / f"shard-{i}", str(i), segment_bytes))
        except BaseException:
            for lg in self._logs:
                lg.close()
            if store is not None:
                store.close()
            os.close(self._lock_fd)
            raise
        self._checkpoints = Checkpoints(self._store, checkpoint_ttl, consumers)
        self._retention_lock = threading.Lock()
        self._closed = threading.Event()
        self._dirty = threading.Event()
        self._flusher: threading.Thread | None = None
        if self._interval is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="stream-fsync", daemon=True
            )
            self._flusher.start()
        self._sweeper: Sweeper | None = None
        if retention_interval is not None:
            self._sweeper = Sweeper(self.apply_retention, retention_interval)
            self._sweeper.start()

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
                acks[i] = Ack(shard_log.shard, first + k, appended_us / 1e6)
        if self._interval is None:
            for shard_log, end in ends:
                shard_log.sync(end)
        else:
            self._dirty.set()
            for shard_log, end in ends:
                shard_log.wait_synced(end)
        if rolled:
            self._retain()
        return acks

    def read(self, shard: str, after: Position | None, limit: int) -> list[StreamRecord]:
        return self._log(shard).records(after, limit)

    def commit(self, consumer: str, shard: str, position: Position) -> None:
        check_commit_position(shard, position, self._log(shard).durable_end()[0])
        self._checkpoints.save(consumer, shard, position)
        self._retain()

    def committed(self, consumer: str, shard: str) -> Position | None:
        self._log(shard)
        self._notice_commits()
        return self._checkpoints.get(consumer, shard)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._dirty.set()
        if self._flusher is not None:
            self._flusher.join()
        if self._sweeper is not None:
            self._sweeper.stop()
        for lg in self._logs:
            try:
                lg.close()
            except TransientError as err:  # a failed shard: nothing more can be made durable
                log.warning("%s", err)
        self._store.close()
        os.close(self._lock_fd)

    # -- StreamMonitor -------------------------------------------------------------------

    def lag(self, consumer: str) -> dict[str, Lag]:
        self._notice_commits()
        now, cps = time.time(), self._checkpoints
        return {lg.shard: lg.lag(cps.get(consumer, lg.shard), consumer, now) for lg in self._logs}

    def status(self) -> StreamStatus:
        self._notice_commits()
        now, cps = time.time(), self._checkpoints
        consumers = sorted(cps.consumers)
        rows = [lg.status(consumers, partial(cps.get, shard=lg.shard), now) for lg in self._logs]
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

    def disk_bytes(self) -> int:
        """Bytes of all segment files, from memory (no system call): cheap per request."""
        return sum(lg.disk_bytes() for lg in self._logs)

    # -- retention -------------------------------------------------------------------------

    def apply_retention(self) -> int:
        """Re-read the checkpoints, then delete segments that retention allows; returns how
        many. The owner's timer calls it every `retention_interval` seconds."""
        self._checkpoints.refresh(0)
        return self._retain()

    def _retain(self) -> int:
        """Apply retention with the checkpoints as cached (runs after commits and rolls)."""
        self._checkpoints.refresh()
        with self._retention_lock:
            return self._retention.apply(self._logs, self._checkpoints.floor, self._store)

    def _notice_commits(self) -> None:
        """Pick up commits of other processes (at most every `checkpoint_ttl` seconds) and
        let retention act on them."""
        if self._checkpoints.refresh():
            self._retain()

    # -- helpers ---------------------------------------------------------------------------

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


def _lock_directory(path: Path) -> int:
    fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TerminalError(f"stream at {path} is already open in another process") from None
    return fd
