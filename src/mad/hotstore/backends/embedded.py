"""`embedded`: the hot store as a SQLite file beside the state database (no server).

`store.hot.embedded.path`, default `{data_dir}/hot.sqlite`. WAL mode, so readers (the
dashboard, the read API) never wait for the feed; a replace is one `BEGIN IMMEDIATE`
transaction. A reader never creates the file: before the feed's first pass it holds nothing
and the lake answers. Each thread has its own connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from mad.hotstore.backends.base import HOT_STORES, HOUR, Held, HotStoreDown, HourRows
from mad.registry import Options

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hot_rows (dataset TEXT NOT NULL, win TEXT NOT NULL, "
    "key TEXT NOT NULL, ts REAL NOT NULL, row BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS hot_rows_series ON hot_rows (dataset, win, key, ts)",
    "CREATE INDEX IF NOT EXISTS hot_rows_time ON hot_rows (dataset, win, ts)",
    "CREATE TABLE IF NOT EXISTS hot_keys (dataset TEXT NOT NULL, win TEXT NOT NULL, "
    "key TEXT NOT NULL, PRIMARY KEY (dataset, win, key))",
    "CREATE TABLE IF NOT EXISTS hot_hours (dataset TEXT NOT NULL, win TEXT NOT NULL, "
    "hour INTEGER NOT NULL, fingerprint TEXT NOT NULL, PRIMARY KEY (dataset, win, hour))",
)
BUSY_MS = 10_000
MAX_KEYS = 500
"""A read names at most this many series (more: all are read and filtered)."""


class EmbeddedOptions(Options):
    """`store.hot.embedded.*`."""

    path: str | None = Field(None, description="the SQLite file (default "
                             "{data_dir}/hot.sqlite)")


@HOT_STORES.register("embedded", EmbeddedOptions)
def embedded_hot_store(path: str | None, data_dir: Path, create: bool = False,
                       **_: object) -> SqliteHot:
    return SqliteHot(Path(path) if path else Path(data_dir) / "hot.sqlite", create)


class SqliteHot:
    name = "embedded"

    def __init__(self, path: Path, create: bool = False) -> None:
        self.path = path
        self.create = create
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def _conn(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if not self.create and not self.path.exists():
            return None
        try:
            if self.create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=BUSY_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                for statement in SCHEMA:
                    conn.execute(statement)
            else:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                       timeout=BUSY_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
        except (sqlite3.Error, OSError) as err:
            raise HotStoreDown(f"hot store {self.path}: {err}") from None
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    def hours(self, dataset: str, window: str) -> dict[int, str]:
        conn = self._conn()
        if conn is None:
            return {}
        try:
            return {int(h): str(f) for h, f in conn.execute(
                "SELECT hour, fingerprint FROM hot_hours WHERE dataset = ? AND win = ?",
                (dataset, window))}
        except sqlite3.Error as err:
            raise HotStoreDown(f"hot store {self.path}: {err}") from None

    def replace(self, dataset: str, window: str, hours: Sequence[HourRows],
                keep_from: int) -> None:
        conn = self._conn()
        assert conn is not None, "the feed opens the hot store with create=True"
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for h in hours:
                    conn.execute("DELETE FROM hot_rows WHERE dataset = ? AND win = ? AND "
                                 "ts >= ? AND ts < ?", (dataset, window, h.hour, h.hour + HOUR))
                    conn.executemany("INSERT INTO hot_rows VALUES (?, ?, ?, ?, ?)",
                                     [(dataset, window, k, ts, row) for k, ts, row in h.rows])
                    conn.executemany("INSERT OR IGNORE INTO hot_keys VALUES (?, ?, ?)",
                                     [(dataset, window, k) for k in {k for k, _, _ in h.rows}])
                    conn.execute("INSERT OR REPLACE INTO hot_hours VALUES (?, ?, ?, ?)",
                                 (dataset, window, h.hour, h.fingerprint))
                conn.execute("DELETE FROM hot_rows WHERE dataset = ? AND win = ? AND ts < ?",
                             (dataset, window, keep_from))
                conn.execute("DELETE FROM hot_hours WHERE dataset = ? AND win = ? AND hour < ?",
                             (dataset, window, keep_from))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            raise HotStoreDown(f"hot store {self.path}: {err}") from None

    def read(self, dataset: str, window: str, start: float, end: float,
             keys: Sequence[str] | None = None) -> Held:
        conn = self._conn()
        if conn is None:
            return Held({}, [])
        where, params = "dataset = ? AND win = ? AND ts >= ? AND ts < ?", [
            dataset, window, start, end]
        wanted = None if keys is None or len(keys) > MAX_KEYS else sorted(set(keys))
        if wanted is not None:
            where += f" AND key IN ({', '.join('?' * len(wanted))})"
            params += wanted
        first = int(start // HOUR * HOUR)
        try:
            conn.execute("BEGIN")  # one snapshot for both reads
            try:
                hours = {int(h): str(f) for h, f in conn.execute(
                    "SELECT hour, fingerprint FROM hot_hours WHERE dataset = ? AND win = ? "
                    "AND hour >= ? AND hour < ?", (dataset, window, first, end))}
                index = "hot_rows_series" if wanted is not None else "hot_rows_time"
                rows = conn.execute(f"SELECT key, row FROM hot_rows INDEXED BY {index} "
                                    f"WHERE {where} ORDER BY ts, key", params).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as err:
            raise HotStoreDown(f"hot store {self.path}: {err}") from None
        picked = set(keys) if keys is not None else None
        return Held(hours, [r for k, r in rows if picked is None or k in picked])

    def keys(self, dataset: str, window: str) -> list[str]:
        conn = self._conn()
        if conn is None:
            return []
        try:
            return [str(k) for (k,) in conn.execute(
                "SELECT key FROM hot_keys WHERE dataset = ? AND win = ? ORDER BY key",
                (dataset, window))]
        except sqlite3.Error as err:
            raise HotStoreDown(f"hot store {self.path}: {err}") from None

    def wipe(self) -> None:
        conn = self._conn()
        if conn is None:
            return
        try:
            conn.execute("DELETE FROM hot_rows")
            conn.execute("DELETE FROM hot_hours")
            conn.execute("DELETE FROM hot_keys")
        except sqlite3.Error as err:
            raise HotStoreDown(f"hot store {self.path}: {err}") from None

    def ping(self) -> None:
        conn = self._conn()
        if conn is not None:
            try:
                conn.execute("SELECT 1")
            except sqlite3.Error as err:
                raise HotStoreDown(f"hot store {self.path}: {err}") from None

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
