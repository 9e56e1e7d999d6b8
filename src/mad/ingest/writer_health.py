"""The raw writer's health, published for other processes: `mad ingest status` and the
ingest API's `/metrics` read it.

The writer usually runs in a process of its own, and what it must report (the lake or the
state database failing, files waiting to be recorded) is exactly what the state database
may not be able to hold at that moment. So the writer overwrites one small file in place,
`{data_dir}/{consumer}.health`, with a single `pwrite` of a fixed size, as the stream's
FRONTIER file is written: the file never grows, so a full disk cannot stop the report. A
checksum catches a read that raced with a rewrite; the reader tries again. It is telemetry,
not state: nothing is decided from it, and a lost update is replaced a second later.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

SIZE = 4096
_HEAD = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
_MAGIC = b"MADH"
_MESSAGE_CHARS = 400
TARGETS = ("lake", "state", "stream")
"""What can fail under the writer: the lake store, the state database, the stream."""


@dataclass(frozen=True)
class WriterHealth:
    """One report: counts since the writer started, and what is failing now (by target,
    with the last error; a target leaves `failing` once an operation on it succeeds)."""

    pid: int
    updated_at: float
    files: int = 0
    unrecorded_files: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def health_path(data_dir: Path, consumer: str) -> Path:
    """Where the writer of `consumer` publishes its health."""
    return data_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", consumer) + ".health")


def encode(health: WriterHealth) -> bytes:
    """The file's bytes: a head and the JSON report, padded to `SIZE`."""
    failing = {k: v[:_MESSAGE_CHARS] for k, v in health.failing.items()}
    payload = orjson.dumps({**health.to_dict(), "failing": failing})
    return (_HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload).ljust(SIZE, b"\0")


def decode(data: bytes) -> WriterHealth | None:
    """The report in `data`, or None when it is missing, torn or not a report."""
    if len(data) < _HEAD.size:
        return None
    magic, length, crc = _HEAD.unpack_from(data)
    payload = data[_HEAD.size:_HEAD.size + length]
    if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        return WriterHealth(**orjson.loads(payload))
    except (orjson.JSONDecodeError, TypeError):
        return None


class NullHealthFile:
    """Publishes nothing: a writer run where no other process looks (tests, batch use)."""

    def publish(self, health: WriterHealth) -> None:
        return None

    def close(self) -> None:
        return None


class HealthFile:
    """The writer's health file: `publish` in the writer, `load` anywhere else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._warned = False

    def publish(self, health: WriterHealth) -> None:
        """Overwrite the report in place. A failure is logged once and never raised: the
        report must not stop the writer."""
        try:
            if self._fd < 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.pwrite(self._fd, encode(health), 0)
        except OSError as err:
            if not self._warned:
                log.warning("raw writer: cannot publish its health to %s: %s", self.path, err)
                self._warned = True
            self.close()

    def load(self) -> WriterHealth | None:
        """The last report, or None when there is none (no writer has run here)."""
        try:
            with self.path.open("rb") as f:
                for _ in range(5):  # a read can race with a rewrite
                    found = decode(os.pread(f.fileno(), SIZE, 0))
                    if found is not None:
                        return found
        except OSError:
            return None
        return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
