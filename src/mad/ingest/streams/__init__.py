"""The ingest stream: a `Stream` Protocol and its backends, chosen by name.

`STREAMS.create("embedded", {"path": ...}, context=StreamContext(...))` opens the local log
as its owner (the one process that appends), or read-only from another process with
`role="reader"` in the context. Each backend is a folder here (`embedded/`, `kinesis/`) whose
`__init__` registers it in `STREAMS`, so adding one touches only its folder. Lag, status and
disk use are the optional `StreamMonitor`.
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
from mad.ingest.streams.monitor import NullMonitor, StreamMonitor

__all__ = [
    "STREAMS",
    "Ack",
    "Lag",
    "NullMonitor",
    "Position",
    "ShardStatus",
    "Stream",
    "StreamContext",
    "StreamCorruptError",
    "StreamMonitor",
    "StreamRecord",
    "StreamStatus",
]
