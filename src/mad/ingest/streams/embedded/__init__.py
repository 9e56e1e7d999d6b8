"""The embedded stream: a durable, segmented, append-only log in a local directory, and the
`embedded` stream backend.

No server: the ingest process owns the directory and is the only one that appends
(`owner.py`; an exclusive lock file stops a second owner). Other processes open it as readers
(`reader.py`). Layout:

    {path}/LOCK                   held with flock by the owner while open
    {path}/state.sqlite           consumer checkpoints, drop counters, shard count
                                  (`checkpoints.py`)
    {path}/shard-{i}/{base}.log   segment files (`shard_log.py`, `segment.py`, `framing.py`)
    {path}/shard-{i}/FRONTIER     how far readers may read (`frontier.py`)

Reads of a shard are shared by the owner and readers (`shard_view.py`, `shard_reader.py`);
which segments may go is `retention.py`, and the owner's timer that applies it while the
stream is quiet is `sweeper.py`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mad.errors import ConfigError
from mad.ingest.streams.base import STREAMS, Stream, StreamContext
from mad.ingest.streams.embedded.owner import EmbeddedStream
from mad.ingest.streams.embedded.reader import EmbeddedReader
from mad.ingest.streams.embedded.setup_check import check as setup_check  # noqa: F401  (registers `mad doctor`'s check)
from mad.registry import Options

__all__ = ["EmbeddedOptions", "EmbeddedReader", "EmbeddedStream", "open_embedded"]


class EmbeddedOptions(Options):
    """`ingest.stream.embedded.*`: the local log's folder, shards, fsync and retention."""

    path: Path | None = Field(None, description="log folder (default <data_dir>/stream)")
    shards: int = Field(1, ge=1, le=64)
    fsync: str = Field("interval_ms=5", pattern=r"^(every_batch|interval_ms=[1-9][0-9]*)$")
    segment_bytes: int = Field(64 * 2**20, ge=2**16)
    retention_seconds: float = Field(86400.0, gt=0)


@STREAMS.register("embedded", EmbeddedOptions)
def open_embedded(*, context: StreamContext, path: Path | None, shards: int, fsync: str,
                  segment_bytes: int, retention_seconds: float) -> Stream:
    """The `embedded` backend: the context's `role="owner"` opens the stream to append,
    `role="reader"` opens it read-only from another process (`EmbeddedReader`; before any
    owner it reads nothing), `role="observer"` too but only if the stream exists (a status
    command creates nothing)."""
    folder = path or context.data_dir / "stream"
    if context.role == "observer":
        if not (folder / "state.sqlite").is_file():
            raise ConfigError(f"no embedded stream at {folder}: the ingest API has not run "
                              "with these settings (check --config, MAD_DATA_DIR, "
                              "ingest.stream.embedded.path)")
        return EmbeddedReader(folder, shards=shards, consumers=context.consumers)
    if context.role == "owner":
        return EmbeddedStream(folder, shards=shards, fsync=fsync, segment_bytes=segment_bytes,
                              retention_seconds=retention_seconds,
                              consumers=context.consumers)
    if context.role == "reader":
        return EmbeddedReader(folder, shards=shards, consumers=context.consumers)
    raise ConfigError(f"embedded stream role must be 'owner', 'reader' or 'observer', "
                      f"got {context.role!r}")
