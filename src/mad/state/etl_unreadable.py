"""Raw files the ETL could not read whole (a truncated or corrupt `.gz`, bytes its engine
cannot decode), one row per file: how many passes found it so, and the last reason.

Such a file is not read into the lake in part: while `attempts` is below the limit
(`etl.unreadable_attempts`) it stays pending and is tried again by the next pass (it may
still be arriving); from then on it is quarantined WHOLE (one `unreadable_file` row in
`md-quarantine`) by a run that records it as read. A file found readable again loses its
row. `mad etl status` shows the files waiting and the files given up on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Integer, String, Table, Text, select

from mad.state.db import UtcDateTime, metadata

etl_unreadable = Table(
    "etl_unreadable",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("first_at", UtcDateTime, nullable=False),
    Column("last_at", UtcDateTime, nullable=False),
)


class UnreadableFiles:
    """Reads and writes `etl_unreadable`; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def attempt(self, key: str, reason: str) -> int:
        """Count one more pass that found `key` unreadable for `reason`; returns the count."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            current = conn.execute(select(etl_unreadable.c.attempts).where(
                etl_unreadable.c.key == key)).scalar_one_or_none()
            if current is None:
                conn.execute(etl_unreadable.insert().values(
                    key=key, attempts=1, reason=reason[:2000], first_at=now, last_at=now))
                return 1
            conn.execute(etl_unreadable.update().where(etl_unreadable.c.key == key).values(
                attempts=current + 1, reason=reason[:2000], last_at=now))
            return int(current) + 1

    def known(self, keys: Iterable[str]) -> dict[str, tuple[int, str]]:
        """The files of `keys` found unreadable before: key -> (attempts, last reason)."""
        wanted = sorted(set(keys))
        out: dict[str, tuple[int, str]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                for key, attempts, reason in conn.execute(select(
                        etl_unreadable.c.key, etl_unreadable.c.attempts,
                        etl_unreadable.c.reason).where(etl_unreadable.c.key.in_(chunk))):
                    out[key] = (int(attempts), str(reason))
        return out

    def clear(self, keys: Iterable[str]) -> None:
        """Forget files that were read whole after all."""
        with self.engine.begin() as conn:
            for key in keys:
                conn.execute(etl_unreadable.delete().where(etl_unreadable.c.key == key))

    def all(self) -> list[dict[str, Any]]:
        """Every file found unreadable, oldest first."""
        q = select(etl_unreadable).order_by(etl_unreadable.c.first_at, etl_unreadable.c.key)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(q)]
