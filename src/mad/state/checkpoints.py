"""Stream consumer checkpoints in the state database.

One row per (stream, consumer, shard): the last position the consumer is done with. Positions
are stored as text because a Kinesis sequence number (up to 128 bits) does not fit a BIGINT;
callers convert. A save is one upsert, durable when it returns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Column, Engine, String, Table, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mad.state.db import UtcDateTime, metadata

stream_checkpoints = Table(
    "stream_checkpoints",
    metadata,
    Column("stream", String(256), primary_key=True),
    Column("consumer", String(256), primary_key=True),
    Column("shard", String(256), primary_key=True),
    Column("position", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)


class Checkpoint(NamedTuple):
    """One committed position of one consumer on one shard."""

    consumer: str
    shard: str
    position: str
    updated_at: datetime


class CheckpointStore:
    """Reads and writes `stream_checkpoints`; safe to share between threads (the engine
    pools connections)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save(self, stream: str, consumer: str, shard: str, position: str | int) -> None:
        """Store `position` as the committed position of `consumer` on `shard`."""
        values = {
            "stream": stream,
            "consumer": consumer,
            "shard": shard,
            "position": str(position),
            "updated_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            dialect = conn.dialect.name
            if dialect in ("sqlite", "postgresql"):
                conn.execute(_upsert(dialect, values))
                return
            table = stream_checkpoints
            changed = conn.execute(
                update(table)
                .where(
                    table.c.stream == stream,
                    table.c.consumer == consumer,
                    table.c.shard == shard,
                )
                .values(position=values["position"], updated_at=values["updated_at"])
            ).rowcount
            if not changed:
                conn.execute(table.insert().values(**values))

    def load(self, stream: str, consumer: str, shard: str) -> str | None:
        """The committed position, or None if `consumer` never committed on `shard`."""
        table = stream_checkpoints
        query = select(table.c.position).where(
            table.c.stream == stream, table.c.consumer == consumer, table.c.shard == shard
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def all(self, stream: str) -> list[Checkpoint]:
        """Every checkpoint of `stream`, ordered by consumer then shard."""
        table = stream_checkpoints
        query = (
            select(table.c.consumer, table.c.shard, table.c.position, table.c.updated_at)
            .where(table.c.stream == stream)
            .order_by(table.c.consumer, table.c.shard)
        )
        with self.engine.connect() as conn:
            return [Checkpoint(*row) for row in conn.execute(query)]


def _upsert(dialect: str, values: dict[str, Any]) -> Any:
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(stream_checkpoints).values(**values)
    return statement.on_conflict_do_update(
        index_elements=["stream", "consumer", "shard"],
        set_={
            "position": statement.excluded.position,
            "updated_at": statement.excluded.updated_at,
        },
    )
