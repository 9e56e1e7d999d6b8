"""The stream between the ingest API and the raw lake writer: the `Stream` Protocol every
backend implements, its records and status rows, and the registry that finds a backend by
name. Backends live in their own folders (`embedded/`, `kinesis/`); what only some of them
can report (lag, status, disk use) is the optional `StreamMonitor` (`monitor.py`).

Model (shared by the embedded log and Kinesis): a stream has shards; a record goes to one
shard chosen from its key (the service name) and gets a position there. Positions are
integers that only grow within a shard (the embedded log's record offset; a Kinesis sequence
number read as an int). Consumers are named; each keeps one committed position per shard,
meaning "everything up to and including this position is done". Delivery is at least once:
a consumer that crashes before committing reads the same records again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, Protocol, Self

from mad.errors import TerminalError
from mad.registry import Registry

if TYPE_CHECKING:
    from mad.config import AwsSettings

Position = int


class Ack(NamedTuple):
    """Where an appended record landed, and when (epoch seconds, UTC: the stream's own
    append time where the backend gives it, as the embedded stream does; else the time the
    append returned)."""

    shard: str
    position: Position
    appended_at: float = 0.0


class StreamRecord(NamedTuple):
    """One record read back from a shard; `appended_at` is epoch seconds (UTC). A tuple
    because consumers read hundreds of thousands per second."""

    shard: str
    position: Position
    key: str
    payload: bytes
    appended_at: float


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a consumer is behind on one shard: records and bytes after its committed
    position, and the age in seconds of the oldest of them (0 when caught up). A backend that
    cannot count exactly (Kinesis reports milliseconds behind) gives its best estimate."""

    records: int
    bytes: int
    age_seconds: float


@dataclass(frozen=True)
class ShardStatus:
    """One row of `mad ingest status`. `first`/`last` are the oldest retained and newest
    readable positions (None when the shard is empty); `committed` and `lag` are keyed by
    consumer name. `segments` and `disk_bytes` are 0 for backends that keep no local files."""

    shard: str
    first: Position | None
    last: Position | None
    committed: dict[str, Position | None]
    lag: dict[str, Lag]
    segments: int
    disk_bytes: int


@dataclass(frozen=True)
class StreamStatus:
    """The whole stream: its shards plus counters an operator needs to see. `dropped_*` count
    unconsumed data deleted to honour a disk budget; `recovered_bytes` counts torn tail bytes
    cut away when the stream was opened."""

    backend: str
    shards: list[ShardStatus]
    disk_bytes: int
    dropped_records: int = 0
    dropped_bytes: int = 0
    recovered_bytes: int = 0
    settings: dict[str, object] = field(default_factory=dict)


class ClosesOnExit:
    """`with stream: ...` closes the stream at the end of the block."""

    def close(self) -> None:
        raise TypeError(f"{type(self).__name__} must define close()")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_commit_position(shard: str, position: Position, durable_next: Position) -> None:
    """A consumer may commit only a position that has been readable (appended and durable)."""
    if not 0 <= position < durable_next:
        raise TerminalError(
            f"cannot commit position {position} on stream shard {shard}: "
            f"readable positions end at {durable_next - 1}"
        )


class StreamCorruptError(TerminalError):
    """Stored stream data failed its checksum where it cannot be a torn tail."""


class Stream(Protocol):
    """A durable, sharded, append-only stream with named consumer checkpoints: what every
    backend must do. How far behind a consumer is, and the status table, are optional
    (`StreamMonitor`), because not every service can count them cheaply."""

    appends_checked: bool
    """True when only the ingest API can append, so every event in it was already checked
    (the raw writer then need not check again); False when any producer may append."""

    shared: bool
    """True when writer processes anywhere may consume it at once (Kinesis): the writers of
    one consumer then share its shards through leases in the state database. False when
    only processes of one data folder can read it (the embedded stream: one writer there)."""

    def shards(self) -> list[str]:
        """The shard ids, in a stable order."""
        ...

    def append(self, records: Sequence[tuple[str, bytes]]) -> list[Ack]:
        """Append `(key, payload)` records; return where each landed, in input order.

        When this returns the records are durable (the backend's fsync policy or the
        service's acknowledgement), so the caller may acknowledge them to the producer.
        Raises TransientError when the stream cannot take data right now, TerminalError when
        a record can never be taken (too large). After an error some of the records may
        still have been stored: the producer retries and the lake deduplicates by event_id.
        """
        ...

    def read(self, shard: str, after: Position | None, limit: int) -> list[StreamRecord]:
        """Up to `limit` durable records of `shard` with a position after `after`
        (None: from the oldest retained record), in position order."""
        ...

    def commit(self, consumer: str, shard: str, position: Position) -> None:
        """Durably record that `consumer` is done with `shard` up to and including `position`."""
        ...

    def committed(self, consumer: str, shard: str) -> Position | None:
        """The last position `consumer` committed on `shard`, or None if it never did."""
        ...

    def close(self) -> None:
        """Release files, threads and connections; appends already acknowledged stay durable."""
        ...


@dataclass(frozen=True)
class StreamContext:
    """What a stream backend may need beyond its own options (`ingest.stream.<name>`):
    `role` is `owner` for the one process that appends (the ingest API), `reader` for
    consumers in other processes, `observer` for a status command (creates nothing: a stream
    that does not exist is a ConfigError); `consumers` are the names to report before they
    first commit."""

    data_dir: Path
    state_url: str
    consumers: tuple[str, ...] = ()
    role: str = "owner"
    aws: AwsSettings | None = None


STREAMS: Registry[Stream] = Registry("stream backend", "mad.ingest.streams",
                                     setting="ingest.stream")
"""Stream backends by name; each factory takes its options and `context=StreamContext`.
A backend is a sub-package of `mad.ingest.streams` whose `__init__` registers it."""
