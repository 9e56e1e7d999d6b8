"""What the ingest API acknowledged and how far the raw writer has landed it, for the
reconciliation of the stream with the raw lake (`mad.quality.reconcile`).

- `ingest_acks`: per stream shard and append hour, the stream records the API appended and
  acknowledged, and the highest position among them. The API adds its counts about once a
  second (`mad.ingest.acks`), so a crash of the API can lose the last second's counts (never
  add any): the raw lake may hold more than was counted, never less without a loss.
- `ingest_progress`: per shard, the position up to which every record is in a raw file that
  the raw files ledger records (the writer's checkpoint, written once its files' rows are in).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Engine, String, Table, Text, and_, select, update
from sqlalchemy.exc import IntegrityError

from mad.state.db import UtcDateTime, metadata

ingest_acks = Table(
    "ingest_acks",
    metadata,
    Column("shard", String(128), primary_key=True),
    Column("hour", BigInteger, primary_key=True),  # epoch s of the append hour (UTC)
    Column("records", BigInteger, nullable=False),
    Column("last_position", Text, nullable=False),  # as text: Kinesis numbers are huge
    Column("updated_at", UtcDateTime, nullable=False),
)

ingest_progress = Table(
    "ingest_progress",
    metadata,
    Column("consumer", String(256), primary_key=True),
    Column("shard", String(128), primary_key=True),
    Column("position", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)


class IngestAcks:
    """Reads and writes both tables; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, counts: Mapping[tuple[str, int], tuple[int, int]]) -> None:
        """Add `(shard, hour) -> (records, highest position)` to the acknowledged counts."""
        now = datetime.now(UTC)
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    for (shard, hour), (records, last) in sorted(counts.items()):
                        where = and_(ingest_acks.c.shard == shard, ingest_acks.c.hour == hour)
                        row = conn.execute(select(ingest_acks.c.last_position)
                                           .where(where)).first()
                        if row is None:
                            conn.execute(ingest_acks.insert().values(
                                shard=shard, hour=hour, records=records,
                                last_position=str(last), updated_at=now))
                        else:
                            conn.execute(update(ingest_acks).where(where).values(
                                records=ingest_acks.c.records + records,
                                last_position=str(max(int(row.last_position), last)),
                                updated_at=now))
                return
            except IntegrityError:  # another API process inserted the same row first
                if attempt == 2:
                    raise

    def acked(self) -> dict[tuple[str, int], tuple[int, int]]:
        """`(shard, hour) -> (records, highest position)`."""
        with self.engine.connect() as conn:
            return {(str(s), int(h)): (int(n), int(p)) for s, h, n, p in conn.execute(
                select(ingest_acks.c.shard, ingest_acks.c.hour, ingest_acks.c.records,
                       ingest_acks.c.last_position))}

    def forget_before(self, hour: int) -> int:
        """Forget the counts of append hours before `hour` (epoch s): their raw files are
        past retention."""
        with self.engine.begin() as conn:
            return int(conn.execute(ingest_acks.delete().where(ingest_acks.c.hour < hour))
                       .rowcount or 0)

    def progress(self, consumer: str, positions: Mapping[str, int]) -> None:
        """The writer `consumer` has landed (and recorded) every record up to `positions`."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for shard, position in positions.items():
                where = and_(ingest_progress.c.consumer == consumer,
                             ingest_progress.c.shard == shard)
                if conn.execute(update(ingest_progress).where(where).values(
                        position=str(position), updated_at=now)).rowcount == 0:
                    conn.execute(ingest_progress.insert().values(
                        consumer=consumer, shard=shard, position=str(position),
                        updated_at=now))

    def landed_through(self) -> dict[str, int]:
        """Per shard, the position every writer has landed (the lowest over writers)."""
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for shard, position in conn.execute(select(ingest_progress.c.shard,
                                                       ingest_progress.c.position)):
                out[str(shard)] = min(out.get(str(shard), int(position)), int(position))
        return out
