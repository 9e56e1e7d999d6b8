"""The embedded stream opened read-only, from a process other than the one that appends.

    STREAMS.create("embedded", {"path": ...}, context=StreamContext(..., role="reader"))
    EmbeddedReader(path)                                   # the same, directly

The owner (`EmbeddedStream`) stays the only appender and keeps its exclusive lock; readers
take no lock, and any number of them may be open. A reader:

- reads only up to the frontier the owner publishes after each fsync (`frontier.py`), so it
  never returns a record a crash of the owner could take back, and it follows segment rolls
  and retention deletes (`shard_reader.py`);
- commits to the shared checkpoint database (`checkpoints.py`), where the owner's `lag`,
  `status` and retention see it within `checkpoint_ttl` seconds;
- cannot append (TerminalError) and never deletes anything: retention is the owner's.

It takes the owner's options too (`fsync`, `segment_bytes`, retention settings) so both can
be opened from the same settings; they do not apply to a reader. The shard count is checked
against the stored one. A reader may open before any owner has: it reads nothing until an
owner publishes a frontier.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

from mad.errors import ConfigError, TerminalError
from mad.ingest.streams.base import (
    Ack,
    ClosesOnExit,
    Lag,
    Position,
    StreamRecord,
    StreamStatus,
    check_commit_position,
)
from mad.ingest.streams.embedded.checkpoints import Checkpoints, StateStore, check_shard_count
from mad.ingest.streams.embedded.shard_reader import ShardReader

OWNER_OPTIONS = frozenset(
    {"fsync", "segment_bytes", "retention_seconds", "retention_bytes", "max_bytes"}
)


class EmbeddedReader(ClosesOnExit):
    """A read-only `Stream` (and `StreamMonitor`) over an embedded stream directory; see the
    module docstring."""

    appends_checked = True
    shared = False

    def __init__(
        self,
        path: str | Path,
        shards: int = 1,
        consumers: Iterable[str] = (),
        checkpoint_ttl: float = 0.5,
        **owner_options: object,
    ) -> None:
        unknown = sorted(set(owner_options) - OWNER_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown embedded stream options: {', '.join(unknown)}")
        if shards < 1:
            raise ConfigError("stream needs shards >= 1")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._store = StateStore(self.path / "state.sqlite")
        try:
            check_shard_count(self._store, self.path, shards)
            self._checkpoints = Checkpoints(self._store, checkpoint_ttl, consumers)
        except BaseException:
            self._store.close()
            raise
        self._views = [ShardReader(self.path / f"shard-{i}", str(i)) for i in range(shards)]
        self._closed = False

    # -- Stream protocol -----------------------------------------------------------------

    def shards(self) -> list[str]:
        return [view.shard for view in self._views]

    def append(self, records: Sequence[tuple[str, bytes]]) -> list[Ack]:
        raise TerminalError(
            f"stream at {self.path} is open as a reader; only the process that owns it "
            "(opened with role='owner') appends"
        )

    def read(self, shard: str, after: Position | None, limit: int) -> list[StreamRecord]:
        return self._view(shard).records(after, limit)

    def commit(self, consumer: str, shard: str, position: Position) -> None:
        check_commit_position(shard, position, self._view(shard).durable_end()[0])
        self._checkpoints.save(consumer, shard, position)

    def committed(self, consumer: str, shard: str) -> Position | None:
        self._view(shard)
        self._checkpoints.refresh()
        return self._checkpoints.get(consumer, shard)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for view in self._views:
            view.close()
        self._store.close()

    # -- StreamMonitor -------------------------------------------------------------------

    def lag(self, consumer: str) -> dict[str, Lag]:
        self._checkpoints.refresh()
        now, cps = time.time(), self._checkpoints
        return {v.shard: v.lag(cps.get(consumer, v.shard), consumer, now) for v in self._views}

    def status(self) -> StreamStatus:
        self._checkpoints.refresh(0)
        now, cps = time.time(), self._checkpoints
        consumers = sorted(cps.consumers)
        rows = []
        for view in self._views:
            view.refresh()
            rows.append(view.status(consumers, partial(cps.get, shard=view.shard), now))
        dropped_records, dropped_bytes = self._store.dropped()
        return StreamStatus(
            "embedded",
            rows,
            sum(row.disk_bytes for row in rows),
            dropped_records,
            dropped_bytes,
            0,
            {"path": str(self.path), "role": "reader"},
        )

    def disk_bytes(self) -> int:
        """Bytes of the segment files, after following the owner's latest rolls and deletes
        (a directory listing per shard: fine for a reader, which is not on a request path)."""
        for view in self._views:
            view.refresh()
        return sum(view.disk_bytes() for view in self._views)

    # -- helpers ---------------------------------------------------------------------------

    def _view(self, shard: str) -> ShardReader:
        try:
            return self._views[int(shard)]
        except (ValueError, IndexError):
            raise TerminalError(f"no shard {shard!r} in stream {self.path}") from None
