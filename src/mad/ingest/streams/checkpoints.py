"""Durable state of the embedded stream: consumer checkpoints, drop counters, shard count.

Kept in one SQLite file (`state.sqlite`) inside the log directory rather than in a file per
consumer: the house rule is that state is a database, SQLite gives atomic durable updates
(WAL, synchronous=FULL) without hand-written temp-file-and-rename code, several counters
change together in one transaction, and the table has the same shape as the checkpoint table
the Kinesis backend keeps in the state database. A commit costs one WAL fsync.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT NOT NULL, shard TEXT NOT NULL, position INTEGER NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (consumer, shard));
CREATE TABLE IF NOT EXISTS dropped (
    shard TEXT PRIMARY KEY, records INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StateStore:
    """Checkpoints and counters of one embedded stream; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def checkpoints(self) -> dict[tuple[str, str], int]:
        """Every committed position, keyed by (consumer, shard)."""
        with self._lock:
            rows = self._db.execute("SELECT consumer, shard, position FROM checkpoints")
            return {(consumer, shard): position for consumer, shard, position in rows}

    def save_checkpoint(self, consumer: str, shard: str, position: int) -> None:
        """Store a committed position; durable when this returns."""
        with self._lock:
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT (consumer, shard) "
                "DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
                (consumer, shard, position, time.time()),
            )

    def add_dropped(self, shard: str, records: int, nbytes: int) -> None:
        """Count unconsumed data deleted to honour the disk budget."""
        with self._lock:
            self._db.execute(
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
