"""Whether a raw `.gz` file can be read whole: every gzip member complete, CRC and length right.

DuckDB's gzip reader stops quietly where a truncated file ends (the lines before the cut come
back, the file looks read) and does not check the CRC (a flipped byte yields garbage lines),
so without this check half a file would reach the lake and the file would be marked done.
The check inflates the file once and throws the output away (zlib checks each member's CRC32
and length trailer); it costs about a second per 500 MB of JSONL, against the several
seconds the events plan spends parsing the same lines. Plain `.jsonl` files have no trailer
to check: a cut last line is quarantined as `invalid_json` like any broken line.

Pure: bytes in, a reason (or None) out, so the DuckDB engine runs it in its process and the
Spark engine on its executors (shipped there by value: it imports nothing of `mad`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
EMPTY = "empty file: no gzip header"


def needs_check(location: str) -> bool:
    """Only gzip files carry a trailer that shows they are whole."""
    return location.endswith(".gz")


def gzip_problem(chunks: Iterable[bytes]) -> str | None:
    """Why the gzip stream in `chunks` cannot be read whole, or None when it can. Several
    members one after the other are one file (as `gzip -d` reads them); zero bytes may pad
    the end."""
    inflater = zlib.decompressobj(wbits=31)
    seen = 0
    padding = False  # only zero bytes may follow once they started after a member
    try:
        for chunk in chunks:
            seen += len(chunk)
            data = chunk
            while data:
                if padding or inflater.eof:
                    if not data.strip(b"\0"):
                        padding = True
                        break
                    if padding:
                        return "data after the zero bytes that end the gzip file"
                    inflater = zlib.decompressobj(wbits=31)  # the next member
                inflater.decompress(data, CHUNK)
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    except zlib.error as err:
        return f"corrupt gzip data ({err})"
    if seen == 0:
        return EMPTY
    if not (inflater.eof or padding):
        return f"gzip stream ends before its trailer at byte {seen} (truncated)"
    return None


def file_chunks(path: str | Path) -> Iterator[bytes]:
    """A local file, in chunks."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def blob_chunks(blob: bytes) -> Iterator[bytes]:
    """A file already in memory, in chunks (bounded output per inflate call)."""
    view = memoryview(blob)
    for start in range(0, len(blob), CHUNK):
        yield bytes(view[start:start + CHUNK])


def check_row(row: Any) -> tuple[str, str | None]:
    """A Spark `binaryFile` row (`path`, `content`) -> (its path, why it cannot be read
    whole or None): what the Spark engine runs on its executors."""
    return str(row.path), gzip_problem(blob_chunks(bytes(row.content)))
