"""The state database's engine factory and the one `metadata` that holds its tables.

Each module that keeps state defines its tables on `metadata` here, so `open_state` creates
them all. SQLAlchemy Core only: plain tables and statements, no ORM sessions.

SQLite connections use WAL (readers do not block the writer), `synchronous=FULL` (a commit is
durable when it returns) and a busy timeout, so several processes (the ingest API, the raw
writer, the CLI) can share one file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, Table, create_engine, event, inspect
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from mad.errors import ConfigError, TerminalError, TransientError

DEFAULT_URL = "sqlite:///data/state.db"
BUSY_TIMEOUT_MS = 30_000
CREATE_ATTEMPTS = 10

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


def open_state(url: str = DEFAULT_URL, create: bool = True) -> Engine:
    """An engine on the state database at `url`, with every table of `metadata` created.

    A relative SQLite path is relative to the working directory; its folder is created.
    With `create=False` (status commands: they only look) nothing is created: a SQLite file
    that does not exist is a ConfigError saying so, which catches a mistyped data folder.
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
            if not create and not Path(database).is_file():
                raise ConfigError(f"no state database at {database}: nothing has run with "
                                  "these settings (check --config, MAD_DATA_DIR, state.url)")
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as err:
        raise ConfigError(f"state database URL {safe_url(url)}: no driver ({err})") from None
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        if create:
            _create_tables(engine)
        else:
            with engine.connect():
                pass
    except OperationalError as err:
        engine.dispose()
        raise TransientError(f"cannot open state database {safe_url(url)}: "
                             f"{_first_line(err)}") from None
    except DatabaseError as err:
        engine.dispose()
        raise TerminalError(f"state database {safe_url(url)} is unusable (not a database, "
                            f"or corrupt?): {_first_line(err)}") from None
    return engine


def _create_tables(engine: Engine) -> None:
    """`create_all`, safe when several processes open a fresh database at once: each checks
    which tables exist and creates the rest, so two can both decide to create one; the loser
    sees "already exists" and checks again, finding it there."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            metadata.create_all(engine)
            _add_columns(engine)
            return
        except (OperationalError, IntegrityError, ProgrammingError) as err:
            if attempt == CREATE_ATTEMPTS - 1 or not _lost_a_race(err):
                raise
            time.sleep(0.05 * (attempt + 1))


def _add_columns(engine: Engine) -> None:
    """Add the nullable columns a table gained since the database was created (a newer
    version of a table only ever adds nullable columns: the migration is `ADD COLUMN`)."""
    found = inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in found.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable:
                raise TerminalError(f"state table {table.name} lacks the column "
                                    f"{column.name}, which cannot be added to existing rows")
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(sql_text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" '
                                  f"{kind}"))


def _lost_a_race(err: DatabaseError) -> bool:
    text = str(err.orig or err).lower()
    return ("already exists" in text or "duplicate key" in text or "database is locked" in text
            or "duplicate column" in text)


def _first_line(err: DatabaseError) -> str:
    lines = str(err.orig or err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


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


def delete_partitions(engine: Engine, table: Table,
                      partitions: Iterable[tuple[str, str]]) -> int:
    """Delete the rows of `table` (with `dataset` and `partition` columns) of each
    `(dataset, partition)`, in one transaction; returns how many."""
    n = 0
    with engine.begin() as conn:
        for dataset, partition in partitions:
            n += int(conn.execute(table.delete().where(
                (table.c.dataset == dataset) & (table.c.partition == partition))).rowcount or 0)
    return n
