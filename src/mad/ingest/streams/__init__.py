"""The ingest stream: a `Stream` Protocol and its backends, chosen by name.

`STREAMS.create("embedded", {"path": ...}, context=StreamContext(...))` opens the local log
as its owner (the one process that appends), or read-only from another process with
`role="reader"` in the context. Each backend module registers itself in `STREAMS`, so adding
one touches only this folder.
"""

from mad.ingest.streams.base import (
    STREAMS,
    Ack,
    Lag,
    Position,
    ShardStatus,
    Stream,
    StreamContext,
    StreamCorruptError,
    StreamRecord,
    StreamStatus,
)

__all__ = [
    "STREAMS",
    "Ack",
    "Lag",
    "Position",
    "ShardStatus",
    "Stream",
    "StreamContext",
    "StreamCorruptError",
    "StreamRecord",
    "StreamStatus",
]
