"""Durable state of the embedded stream: consumer checkpoints, drop counters, shard count.

Kept in one SQLite file (`state.sqlite`) inside the log directory rather than in a file per
consumer: the house rule is that state is a database, SQLite gives atomic durable updates
(WAL, synchronous=FULL) without hand-written temp-file-and-rename code, several counters
change together in one transaction, and the table has the same shape as the checkpoint table
the Kinesis backend keeps in the state database. A commit costs one WAL fsync.

The owning process and reader processes share the file: WAL lets them read while one
writes, and a busy timeout makes a writer wait for another process's transaction instead of
failing. `Checkpoints` caches the positions in a process and re-reads them after a short
time, so a process sees the commits other processes make.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from mad.errors import ConfigError, TerminalError, TransientError

BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT NOT NULL, shard TEXT NOT NULL, position INTEGER NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (consumer, shard));
CREATE TABLE IF NOT EXISTS dropped (
    shard TEXT PRIMARY KEY, records INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StateStore:
    """Checkpoints and counters of one embedded stream; safe to share between threads.

    A file that is not a database is a TerminalError naming it (one line, no traceback); a
    write that fails for a passing reason (disk full, I/O error, locked) is a TransientError,
    so the raw writer retries its commit with backoff instead of dying.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.path = path
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        try:
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            self._db.close()
            raise self._error(err) from None

    def _error(self, err: sqlite3.Error) -> TerminalError | TransientError:
        if isinstance(err, sqlite3.OperationalError):
            return TransientError(f"stream checkpoint file {self.path}: {err}")
        return TerminalError(
            f"stream checkpoint file {self.path} is not a usable SQLite database ({err}); "
            "move it away to start every consumer again from the oldest record kept (the "
            "lake may then get duplicates), or put back a copy from a backup")

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as err:
                raise self._error(err) from None

    def checkpoints(self) -> dict[tuple[str, str], int]:
        """Every committed position, keyed by (consumer, shard)."""
        with self._lock:
            rows = self._db.execute("SELECT consumer, shard, position FROM checkpoints")
            return {(consumer, shard): position for consumer, shard, position in rows}

    def save_checkpoint(self, consumer: str, shard: str, position: int) -> None:
        """Store a committed position; durable when this returns."""
        self._write(
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT (consumer, shard) "
            "DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            (consumer, shard, position, time.time()),
        )

    def add_dropped(self, shard: str, records: int, nbytes: int) -> None:
        """Count unconsumed data deleted to honour the disk budget."""
        self._write(
            "INSERT INTO dropped VALUES (?, ?, ?) ON CONFLICT (shard) DO UPDATE SET "
            "records = records + excluded.records, bytes = bytes + excluded.bytes",
            (shard, records, nbytes),
        )

    def dropped(self) -> tuple[int, int]:
        """Total (records, bytes) ever dropped, over all shards."""
        with self._lock:
            row = self._db.execute("SELECT SUM(records), SUM(bytes) FROM dropped").fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def meta(self, key: str, default: str) -> str:
        """A stored setting, written with `default` the first time it is asked for."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, default))
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def check_shard_count(store: StateStore, path: Path, shards: int) -> None:
    """Store the shard count the first time; refuse a different one later."""
    stored = int(store.meta("shards", str(shards)))
    if stored != shards:
        raise ConfigError(
            f"stream at {path} has {stored} shards, settings ask for {shards}; "
            "keys would move between shards. Use the stored count or a new path."
        )


class Checkpoints:
    """Committed positions as this process last read them, plus the consumers known so far
    (those named when opening and any that ever committed). Thread-safe. Positions committed
    by other processes show up once `refresh` re-reads the store (at most every `ttl`
    seconds); this process's own commits show at once."""

    def __init__(self, store: StateStore, ttl: float, consumers: Iterable[str] = ()) -> None:
        self._store, self._ttl = store, ttl
        self._lock = threading.Lock()
        self._positions = store.checkpoints()
        self._read_at = time.monotonic()
        self.consumers = frozenset(consumers) | {c for c, _ in self._positions}

    def get(self, consumer: str, shard: str) -> int | None:
        """The last position `consumer` committed on `shard`, or None."""
        return self._positions.get((consumer, shard))

    def save(self, consumer: str, shard: str, position: int) -> None:
        """Store a commit durably and remember it."""
        with self._lock:
            self._store.save_checkpoint(consumer, shard, position)
            self._positions = {**self._positions, (consumer, shard): position}
            self.consumers = self.consumers | {consumer}

    def refresh(self, max_age: float | None = None) -> bool:
        """Re-read the store if the cache is older than `max_age` (default: the ttl);
        returns whether any position changed."""
        if time.monotonic() - self._read_at < (self._ttl if max_age is None else max_age):
            return False
        with self._lock:
            fresh = self._store.checkpoints()
            changed = fresh != self._positions
            self._positions, self._read_at = fresh, time.monotonic()
            self.consumers = self.consumers | {c for c, _ in fresh}
        return changed

    def floor(self, shard: str) -> int:
        """The highest position every known consumer has committed on `shard` (-1: none)."""
        positions = self._positions
        return min((positions.get((c, shard), -1) for c in self.consumers), default=-1)
