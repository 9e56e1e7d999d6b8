"""The ingest stream: a `Stream` Protocol and its backends, chosen by name.

`open_stream("embedded", path=...)` opens the local log as its owner (the one process that
appends); `open_stream("embedded", path=..., role="reader")` opens it read-only from another
process. Each backend module registers itself with `register_stream`, so adding one touches
only this folder.
"""

from mad.ingest.streams.base import (
    Ack,
    Lag,
    Position,
    ShardStatus,
    Stream,
    StreamCorruptError,
    StreamRecord,
    StreamStatus,
    open_stream,
    register_stream,
    stream_names,
)

__all__ = [
    "Ack",
    "Lag",
    "Position",
    "ShardStatus",
    "Stream",
    "StreamCorruptError",
    "StreamRecord",
    "StreamStatus",
    "open_stream",
    "register_stream",
    "stream_names",
]
