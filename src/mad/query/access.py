"""What the query functions open, and how they read it: the lake and the state database,
both looked at only (nothing is created), closed after each call; Parquet read with DuckDB
from objects fetched through the lake's object store, so a local and an S3 lake read alike.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from mad.config import Settings
from mad.errors import MadError, TerminalError
from mad.state import open_state
from mad.stores import ObjectStore, lake_store

DUCKDB_MEMORY = "512MB"
"""The memory one query's DuckDB connection may use (it spills or fails past it)."""

DB_ERRORS = (OperationalError, ProgrammingError)
"""What reading a table a state database does not have yet raises (a database written by
an older release): the caller counts the table as empty."""


class QueryError(TerminalError):
    """A bad argument to a query function (an unknown dataset, a key outside the lake, a
    range too long): one line that says what is allowed."""


def open_lake(settings: Settings) -> ObjectStore:
    """The configured lake; a ConfigError when its folder or bucket does not exist."""
    return lake_store(settings, must_exist=True)


_engines: dict[tuple[str, int, int], Engine] = {}
_engines_lock = threading.Lock()
MAX_ENGINES = 16


@contextmanager
def state_db(settings: Settings) -> Iterator[Engine]:
    """The state database, opened without creating anything (a ConfigError when a SQLite
    file is missing). The engine (its connection pool) is kept for the next call on the same
    database: opening one costs more than most reads. A SQLite file is known by its inode,
    so a file deleted and made again is opened afresh."""
    url = settings.state_url
    key = (url, *_file_id(url))
    with _engines_lock:
        engine = _engines.get(key)
    if engine is None:
        engine = open_state(url, create=False)
        with _engines_lock:
            if len(_engines) >= MAX_ENGINES:
                for old in _engines.values():
                    old.dispose()
                _engines.clear()
            engine = _engines.setdefault(key, engine)
    yield engine


def _file_id(url: str) -> tuple[int, int]:
    """(device, inode) of a SQLite URL's file, (0, 0) for other databases; (-1, -1) when the
    file is missing (open_state then says so)."""
    if not url.startswith("sqlite:///"):
        return 0, 0
    try:
        found = os.stat(url.removeprefix("sqlite:///"))
    except OSError:
        return -1, -1
    return found.st_dev, found.st_ino


_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")


def check_name(value: str, what: str = "service") -> str:
    """A service or series name (lowercase a-z 0-9 _ . -), or a QueryError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise QueryError(f"bad {what} name {value!r}: lowercase a-z 0-9 _ . -")
    return value


def first_line(err: BaseException) -> str:
    """The first line of an error, for the `errors` of a result."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def naive(value: datetime) -> datetime:
    """The naive UTC datetime Parquet `TIMESTAMP` columns compare with."""
    return utc(value).replace(tzinfo=None)


def check_range(start: datetime, end: datetime, max_days: float) -> tuple[datetime, datetime]:
    """`[start, end)` as aware UTC, or a QueryError when it is empty or longer than
    `max_days`."""
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise QueryError("start and end must be datetimes")
    start, end = utc(start), utc(end)
    if end <= start:
        raise QueryError(f"empty time range: end {end.isoformat()} is not after start "
                         f"{start.isoformat()}")
    if end - start > timedelta(days=max_days):
        raise QueryError(f"time range of {(end - start).total_seconds() / 86400:.1f} days is "
                         f"longer than the {max_days:g} days allowed here")
    return start, end


def days_between(start: datetime, end: datetime) -> set[str]:
    """The `YYYY-MM-DD` days (UTC) that `[start, end)` touches."""
    first: date = utc(start).date()
    last: date = (utc(end) - timedelta(microseconds=1)).date()
    return {(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)}


def plain(value: Any) -> Any:
    """A value as JSON can hold it: NaN and infinities as None, naive datetimes as UTC."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return utc(value)
    return value


def parquet_rows(store: ObjectStore, keys: Sequence[str], sql: str,
                 params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows of `sql` over the Parquet objects `keys`, fetched whole into a temporary folder;
    `sql` names them `data` (e.g. `SELECT service FROM data`). Values come back plain."""
    if not keys:
        return []
    with tempfile.TemporaryDirectory(prefix="mad-query-") as tmp:
        paths = []
        for n, key in enumerate(keys):
            path = Path(tmp) / f"{n}.parquet"
            path.write_bytes(store.get(key))
            paths.append(str(path))
        con = duckdb.connect(config={"memory_limit": DUCKDB_MEMORY, "threads": 1})
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet({_list(paths)}, "
                        "union_by_name=true, hive_partitioning=false)")
            cursor = con.execute(sql, list(params))
            names = [d[0] for d in cursor.description or ()]
            return [{n: plain(v) for n, v in zip(names, row, strict=True)}
                    for row in cursor.fetchall()]
        except duckdb.Error as err:
            raise MadError(f"cannot read {keys[0]} and {len(keys) - 1} more: "
                           f"{first_line(err)}") from None
        finally:
            con.close()


def _list(paths: Sequence[str]) -> str:
    """A DuckDB list literal of paths this module made (temporary file names only)."""
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


BUCKETS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
MAX_BUCKETS = 5000
RATES_MAX_DAYS = 35.0


def buckets(start: datetime, end: datetime,
            bucket: str) -> tuple[datetime, datetime, datetime, int, int]:
    """The buckets of `bucket` over `[start, end)` (at most RATES_MAX_DAYS and MAX_BUCKETS):
    (start and end as checked, start of the first bucket, seconds each, how many); refuses
    an unknown bucket or too many."""
    if bucket not in BUCKETS:
        raise QueryError(f"unknown bucket {bucket!r}; known: {', '.join(BUCKETS)}")
    start, end = check_range(start, end, RATES_MAX_DAYS)
    step = BUCKETS[bucket]
    first = datetime.fromtimestamp(start.timestamp() // step * step, UTC)
    count = math.ceil((end - first).total_seconds() / step)
    if count > MAX_BUCKETS:
        raise QueryError(f"{count} buckets of {bucket} from {start.isoformat()} to "
                         f"{end.isoformat()}: at most {MAX_BUCKETS}; choose a larger bucket "
                         "or a shorter range")
    return start, end, first, step, count
