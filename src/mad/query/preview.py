"""A paged preview of one lake file's rows (JSONL, gzipped JSONL or Parquet), at bounded cost.

The key must name a data file under a dataset of this lake (`mad.lake`): a relative path of
plain folder names, no `..`, no hidden or absolute parts. One call reads at most
`MAX_FILE_BYTES` from the store; a JSONL page is read by streaming lines and stopping after
`offset + limit` (each line cut at `MAX_LINE_BYTES`, at most `MAX_SCAN_BYTES` decompressed);
a Parquet page reads only the row groups holding its rows. `total` is the file's row count
when known (Parquet, or a JSONL file read to its end), else None.
"""

from __future__ import annotations

import gzip
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import orjson
import pyarrow.parquet as pq

from mad import lake
from mad.config import Settings
from mad.query.access import QueryError, open_lake, plain

MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
MAX_KEY = 1024
MAX_FILE_BYTES = 256 * 2**20
MAX_LINE_BYTES = 64 * 2**10
MAX_SCAN_BYTES = 512 * 2**20
FORMATS = ("jsonl", "jsonl.gz", "parquet")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=:-]{0,255}")
_DATASETS = frozenset((*lake.RAW_DATASETS.values(), lake.ERRORS_DATASET,
                       *lake.TRANSFORMED_DATASETS.values(), lake.QUARANTINE_DATASET,
                       lake.AGGREGATES_DATASET, lake.ANOMALIES_DATASET))


@dataclass(frozen=True)
class Page:
    """Rows `offset .. offset + limit` of one file; `columns` in first-seen order."""

    columns: list[str]
    rows: list[dict[str, Any]]
    total: int | None
    offset: int
    limit: int
    key: str = ""
    format: str = ""
    cut_lines: int = 0  # JSONL lines of this page longer than MAX_LINE_BYTES, shown cut
    notes: list[str] = field(default_factory=list)


def file_format(name: str) -> str | None:
    """`jsonl`, `jsonl.gz` or `parquet` from a file name, else None."""
    for fmt in ("jsonl.gz", "jsonl", "parquet"):
        if name.endswith("." + fmt):
            return fmt
    return None


def check_key(key: str) -> str:
    """`key` as is when it names a data file under a dataset of the lake, else QueryError."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY:
        raise QueryError("a file key is 1 to 1024 characters")
    parts = key.split("/")
    if parts[0] not in _DATASETS:
        raise QueryError(f"{key!r} is not under a dataset of the lake (known: "
                         f"{', '.join(sorted(_DATASETS))})")
    if len(parts) < 2 or any(p in ("", ".", "..") or not _PART.fullmatch(p) for p in parts):
        raise QueryError(f"bad file key {key!r}: plain folder and file names only, no "
                         "'..', hidden or empty parts")
    if file_format(parts[-1]) is None:
        raise QueryError(f"{key!r} is not a data file ({', '.join(FORMATS)})")
    return key


def _check_page(offset: int, limit: int) -> None:
    for name, value, low, high in (("offset", offset, 0, MAX_OFFSET),
                                   ("limit", limit, 1, MAX_LIMIT)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise QueryError(f"{name} must be a whole number from {low} to {high}, "
                             f"not {value!r}")


def preview(settings: Settings, key: str, offset: int = 0, limit: int = 50) -> Page:
    """Rows `offset .. offset + limit` (at most 500) of the lake file `key` (see the module
    doc for what is checked and what one call may cost)."""
    check_key(key)
    _check_page(offset, limit)
    store = open_lake(settings)
    size = store.sizes(key).get(key)
    if size is None:
        raise QueryError(f"no file {key} in the lake")
    if size > MAX_FILE_BYTES:
        raise QueryError(f"{key} is {size} bytes, more than the {MAX_FILE_BYTES} a preview "
                         "reads; query it with DuckDB or Spark")
    data = store.get(key)
    fmt = file_format(key) or ""
    if fmt == "parquet":
        return _parquet_page(data, key, offset, limit)
    stream: IO[bytes] | gzip.GzipFile = io.BytesIO(data)
    if fmt == "jsonl.gz":
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    return _jsonl_page(stream, key, fmt, offset, limit)


def _lines(stream: IO[bytes] | gzip.GzipFile) -> Iterator[tuple[bytes, bool]]:
    """Each line (without its newline) cut at MAX_LINE_BYTES, and whether it was cut; stops
    after MAX_SCAN_BYTES."""
    scanned = 0
    while scanned < MAX_SCAN_BYTES:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        scanned += len(line)
        if line.endswith(b"\n"):
            yield line[:-1], False
            continue
        if len(line) <= MAX_LINE_BYTES:  # the last line, without a newline
            yield line, False
            return
        while scanned < MAX_SCAN_BYTES:  # skip the rest of a long line
            more = stream.readline(MAX_LINE_BYTES)
            scanned += len(more)
            if not more or more.endswith(b"\n"):
                break
        yield line[:MAX_LINE_BYTES], True


def _jsonl_page(stream: IO[bytes] | gzip.GzipFile, key: str, fmt: str, offset: int,
                limit: int) -> Page:
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    cut = 0
    seen = 0
    ended = True
    try:
        for line, was_cut in _lines(stream):
            if seen >= offset + limit:
                ended = False
                break
            seen += 1
            if seen <= offset:
                continue
            row = _json_row(line, was_cut)
            cut += was_cut
            columns.update(dict.fromkeys(row))
            rows.append(row)
        else:
            ended = stream.read(1) == b""
    except (OSError, EOFError) as err:  # a cut or corrupt .gz: show what could be read
        return Page(list(columns), rows, None, offset, limit, key, fmt, cut,
                    [f"file unreadable after line {seen}: {err}"])
    return Page(list(columns), rows, seen if ended else None, offset, limit, key, fmt, cut)


def _json_row(line: bytes, cut: bool) -> dict[str, Any]:
    """One JSON object line as a row; anything else as `_line` with `_error`."""
    text = line.decode("utf-8", "replace")
    if cut:
        return {"_line": text, "_error": f"line longer than {MAX_LINE_BYTES} bytes, cut"}
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {"_line": text, "_error": "not JSON"}
    if not isinstance(value, dict):
        return {"_line": text, "_error": "not a JSON object"}
    return {str(k): _value(v) for k, v in value.items()}


def _parquet_page(data: bytes, key: str, offset: int, limit: int) -> Page:
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise QueryError(f"{key} is not readable Parquet: {err}") from None
    meta = parquet.metadata
    total = meta.num_rows
    columns = list(parquet.schema_arrow.names)
    rows: list[dict[str, Any]] = []
    first = 0
    for group in range(meta.num_row_groups):
        count = meta.row_group(group).num_rows
        if first + count <= offset:
            first += count
            continue
        if len(rows) >= limit:
            break
        # pyarrow's thread pool can abort the interpreter at exit: read on this thread
        table = parquet.read_row_group(group, use_threads=False)
        begin = max(0, offset - first)
        part = table.slice(begin, limit - len(rows))
        rows += [{k: _value(v) for k, v in r.items()} for r in part.to_pylist()]
        first += count
    return Page(columns, rows, total, offset, limit, key, "parquet")


def _value(value: Any) -> Any:
    """A cell as JSON holds it: NaN as None, naive times as UTC, bytes as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return plain(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value
