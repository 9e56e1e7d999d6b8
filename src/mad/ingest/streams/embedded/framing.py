"""Record framing for the embedded log: how one record is laid out in a segment file.

A frame is a fixed header followed by the key and the payload:

    length   u32  bytes after the length and crc fields (10 + key length + payload length)
    crc32    u32  CRC-32 of everything after this field
    appended i64  append time, microseconds since the epoch (UTC)
    key_len  u16  length of the key in bytes
    key      key_len bytes (UTF-8)
    payload  the rest

The length lets a reader skip to the next frame; the CRC lets recovery tell a torn or
corrupt frame from a whole one. A zero-filled tail (what some file systems leave after a
crash) fails both checks. Pure functions over bytes: no files here.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Callable, Sequence
from typing import NamedTuple

HEAD = struct.Struct("<II")  # length, crc32
BODY_HEAD = struct.Struct("<qH")  # appended_us, key_len
HEADER_SIZE = HEAD.size + BODY_HEAD.size
MAX_FRAME = 64 * 1024 * 1024
"""Largest frame accepted; a bigger length field is read as corruption, not as a record."""


class Frame(NamedTuple):
    """One decoded frame; `end` is the buffer position just after it."""

    end: int
    appended_us: int
    key: bytes
    payload: bytes


class FrameError(Exception):
    """The bytes at a position are not a whole, valid frame.

    `needed` is the total frame size when the header is readable but the buffer ends before
    the frame does (a torn frame, or just the end of a read chunk); it is None when the frame
    is invalid whatever follows (bad length or CRC mismatch).
    """

    def __init__(self, reason: str, needed: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.needed = needed


def encode(
    records: Sequence[tuple[bytes, bytes]],
    appended_us: int,
    start: int,
    on_frame: Callable[[int], None] | None = None,
) -> bytes:
    """Frame `(key, payload)` pairs into one buffer; `on_frame(position)` is told where each
    frame starts, counting from `start` (the file position the buffer will be written at)."""
    parts: list[bytes] = []
    pos = start
    for key, payload in records:
        body_head = BODY_HEAD.pack(appended_us, len(key))
        crc = zlib.crc32(payload, zlib.crc32(key, zlib.crc32(body_head)))
        length = BODY_HEAD.size + len(key) + len(payload)
        parts += (HEAD.pack(length, crc), body_head, key, payload)
        if on_frame is not None:
            on_frame(pos)
        pos += HEAD.size + length
    return b"".join(parts)


def decode(buf: bytes, pos: int) -> Frame:
    """Decode the frame starting at `pos`; raise FrameError if it is torn or corrupt."""
    avail = len(buf) - pos
    if avail < HEADER_SIZE:
        raise FrameError(f"{avail} bytes left, header needs {HEADER_SIZE}", HEADER_SIZE)
    length, crc = HEAD.unpack_from(buf, pos)
    if length < BODY_HEAD.size or length > MAX_FRAME:
        raise FrameError(f"length field {length} out of range")
    appended_us, key_len = BODY_HEAD.unpack_from(buf, pos + HEAD.size)
    if key_len > length - BODY_HEAD.size:
        raise FrameError(f"key length {key_len} exceeds frame length {length}")
    end = pos + HEAD.size + length
    if end > len(buf):
        raise FrameError(f"frame needs {HEAD.size + length} bytes, {avail} left", end - pos)
    body = pos + HEAD.size
    if zlib.crc32(memoryview(buf)[body:end]) != crc:
        raise FrameError("CRC mismatch")
    key_at = body + BODY_HEAD.size
    return Frame(end, appended_us, buf[key_at : key_at + key_len], buf[key_at + key_len : end])


def decode_many(buf: bytes, pos: int, limit: int) -> tuple[list[tuple[int, bytes, bytes]], int]:
    """Decode up to `limit` frames from `pos` as (appended_us, key, payload).

    The fast path of a read. Stops early at the end of the buffer or at the first frame that
    is not whole and valid, and returns where it stopped: `decode` at that position says why.
    """
    out: list[tuple[int, bytes, bytes]] = []
    size, view, crc32 = len(buf), memoryview(buf), zlib.crc32
    head, body_head = HEAD.unpack_from, BODY_HEAD.unpack_from
    while len(out) < limit and size - pos >= HEADER_SIZE:
        length, crc = head(buf, pos)
        end = pos + HEAD.size + length
        if length < BODY_HEAD.size or end > size or crc32(view[pos + HEAD.size : end]) != crc:
            break
        appended_us, key_len = body_head(buf, pos + HEAD.size)
        key_at = pos + HEADER_SIZE
        if key_at + key_len > end:
            break
        out.append((appended_us, buf[key_at : key_at + key_len], buf[key_at + key_len : end]))
        pos = end
    return out, pos


class ScanResult(NamedTuple):
    """What a scan of one segment file found; `problem` is None when the file was whole."""

    records: int
    valid_end: int
    last_appended_us: int | None
    index_offsets: array[int]
    index_positions: array[int]
    problem: str | None


def scan(
    read_at: Callable[[int, int], bytes],
    size: int,
    base: int,
    index_every: int,
    chunk: int = 1024 * 1024,
) -> ScanResult:
    """Walk every frame of a segment of `size` bytes, checking each CRC.

    `read_at(position, n)` reads the file. Returns how many whole frames there are, where the
    last one ends, and a sparse index (one entry per `index_every` bytes) from record offset
    to file position; stops at the first bad frame and says why in `problem`.
    """
    offsets, positions = array("q", [base]), array("q", [0])
    count, pos, last_indexed, last_us = 0, 0, 0, None
    while pos < size:
        buf = read_at(pos, min(chunk, size - pos))
        if not buf:
            return ScanResult(count, pos, last_us, offsets, positions, "file shorter than expected")
        p = 0
        while p < len(buf):
            try:
                frame = decode(buf, p)
            except FrameError as err:
                if err.needed is not None and pos + p + err.needed <= size:
                    if p > 0:
                        break  # the frame straddles the chunk end: read on from here
                    if len(buf) < err.needed:  # a frame larger than the chunk: read it whole
                        buf = read_at(pos, err.needed)
                        if len(buf) == err.needed:
                            continue
                return ScanResult(count, pos + p, last_us, offsets, positions, err.reason)
            if pos + p - last_indexed >= index_every:
                offsets.append(base + count)
                positions.append(pos + p)
                last_indexed = pos + p
            count += 1
            last_us = frame.appended_us
            p = frame.end
        pos += p
    return ScanResult(count, pos, last_us, offsets, positions, None)
