"""The state database's engine factory and the one `metadata` that holds its tables.

Each module that keeps state defines its tables on `metadata` here, so `open_state` creates
them all. SQLAlchemy Core only: plain tables and statements, no ORM sessions.

SQLite connections use WAL (readers do not block the writer), `synchronous=FULL` (a commit is
durable when it returns) and a busy timeout, so several processes (the ingest API, the raw
writer, the CLI) can share one file.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from mad.errors import ConfigError, TransientError

DEFAULT_URL = "sqlite:///data/state.db"
BUSY_TIMEOUT_MS = 30_000

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware on every dialect (SQLite keeps
    no offset, PostgreSQL `timestamptz` converts to the session zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def open_state(url: str = DEFAULT_URL) -> Engine:
    """An engine on the state database at `url`, with every table of `metadata` created.

    A relative SQLite path is relative to the working directory; its folder is created.
    Raises ConfigError for a URL that names no usable database driver, TransientError when
    the database cannot be reached.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"bad state database URL {url!r}: expected e.g. {DEFAULT_URL} or "
            "postgresql+psycopg://user@host:5432/db"
        ) from None
    options: dict[str, Any] = {"pool_pre_ping": True}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as err:
        raise ConfigError(f"state database URL {safe_url(url)}: no driver ({err})") from None
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        metadata.create_all(engine)
    except OperationalError as err:
        engine.dispose()
        detail = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        raise TransientError(f"cannot open state database {safe_url(url)}: {detail}") from None
    return engine


def safe_url(url: str) -> str:
    """`url` with any password masked, for messages and status output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<bad url>"


def _sqlite_pragmas(connection: Any, record: ConnectionPoolEntry) -> None:
    if not isinstance(connection, sqlite3.Connection):
        return
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()
