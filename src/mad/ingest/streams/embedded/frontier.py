"""The durable frontier of one shard: how far other processes may read.

The owning process writes `{shard dir}/FRONTIER` after every fsync (and after recovery on
open): the offset after the last durable record, the base offset of the segment that record
is in, and the file size of that segment up to it. Readers in other processes never read
past it, so they never see a record that a crash of the owner could take back.

The file is overwritten in place with one small `pwrite` and is never fsynced. That is safe
because the owner writes it only after the data it points to is durable: whatever version of
the file survives a crash (including an older one, when a machine crash loses the unsynced
page) points at data that is on disk, so the frontier a reader sees is at worst stale-low,
never ahead. A checksum catches a torn or half-persisted file; a reader treats it as
"unknown" and keeps what it last knew. The owner rewrites the file when it reopens.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

_LAYOUT = struct.Struct("<4sqqqI")  # magic, next offset, segment base, segment bytes, crc32
_MAGIC = b"MADF"
_SIZE = 64  # the file keeps a fixed size; the record sits at its start
NAME = "FRONTIER"


class Frontier(NamedTuple):
    """Records below `next` are durable; the last of them is in segment `base`, which is
    durable up to byte `size`."""

    next: int
    base: int
    size: int


def encode(frontier: Frontier) -> bytes:
    """The file's bytes for `frontier`."""
    head = _LAYOUT.pack(_MAGIC, *frontier, 0)[: -4]
    return (head + struct.pack("<I", zlib.crc32(head))).ljust(_SIZE, b"\0")


def decode(data: bytes) -> Frontier | None:
    """The frontier in `data`, or None if it is missing, torn or not a frontier."""
    if len(data) < _LAYOUT.size:
        return None
    magic, nxt, base, size, crc = _LAYOUT.unpack_from(data)
    if magic != _MAGIC or zlib.crc32(data[: _LAYOUT.size - 4]) != crc:
        return None
    if not 0 <= base <= nxt or size < 0:
        return None
    return Frontier(nxt, base, size)


class FrontierFile:
    """One shard's frontier file: `publish` in the owner, `load` in readers."""

    def __init__(self, directory: Path, writable: bool) -> None:
        self.path = directory / NAME
        self._fd = -1
        if writable:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def publish(self, frontier: Frontier) -> None:
        """Overwrite the file; call only once the data it points to is durable."""
        os.pwrite(self._fd, encode(frontier), 0)

    def load(self) -> Frontier | None:
        """The published frontier, or None when there is none yet or it cannot be read
        whole (retried a few times, since a read can race with a rewrite)."""
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
        for _ in range(5):
            found = decode(os.pread(self._fd, _LAYOUT.size, 0))
            if found is not None:
                return found
        return None

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
