"""What a stream can report about itself beyond the `Stream` Protocol: consumer lag, the
status table and disk use.

Optional, because a backend may have no cheap way to count them (a managed service that
reports nothing, a third-party log). The ingest wiring checks once whether a stream is a
`StreamMonitor`; if not it hands out `NullMonitor`, so the API's back-pressure, `/health`,
`/metrics` and `mad ingest status` call a monitor unguarded instead of asking the stream
what it can do at every call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from mad.ingest.streams.base import Lag, ShardStatus, Stream, StreamStatus


@runtime_checkable
class StreamMonitor(Protocol):
    """Lag, status and disk use of a stream."""

    def lag(self, consumer: str) -> dict[str, Lag]:
        """Per shard, how far `consumer` is behind; cheap enough to call per request."""
        ...

    def status(self) -> StreamStatus:
        """Everything `mad ingest status` shows, for every known consumer."""
        ...

    def disk_bytes(self) -> int:
        """Bytes the stream keeps on local disk (0 when it keeps none); cheap per request."""
        ...


class NullMonitor:
    """The monitor of a stream that reports nothing: no lag (so back-pressure never refuses
    for lag), no local disk use, and a status with the shards and the named consumers'
    checkpoints, which every stream can give."""

    def __init__(self, stream: Stream, backend: str, consumers: Iterable[str] = ()) -> None:
        self.stream, self.backend = stream, backend
        self.consumers = sorted(set(consumers))

    def lag(self, consumer: str) -> dict[str, Lag]:
        return {}

    def status(self) -> StreamStatus:
        rows = [
            ShardStatus(shard=shard, first=None, last=None,
                        committed={c: self.stream.committed(c, shard) for c in self.consumers},
                        lag={}, segments=0, disk_bytes=0)
            for shard in self.stream.shards()
        ]
        return StreamStatus(self.backend, rows, 0)

    def disk_bytes(self) -> int:
        return 0
