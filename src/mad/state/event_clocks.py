"""How far each source's events have reached, as of the published aggregates: what the
detection watermark is computed from (`mad.detect.watermark`).

`etl_clocks`: per aggregate window size, event day and source (kind x service x host), the
newest event time of the source's events of that day, each event's time capped at the end of
its ingest hour (an event cannot have happened after it was received, so a host dated hours
ahead counts as at most the end of the hour it was received in), the newest ingest hour
among them, and how many events. The ETL writes a day's rows in the transaction that records
that day's aggregates as published (`EtlLedger.succeed(clocks=...)`), so the clocks never
run ahead of the aggregates detection reads.

A source is one host's events of one kind: logs, metrics and APM events travel through
separate raw datasets and separate ETL runs, so one of them can lag while the others are in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Connection, Engine, String, Table, and_, func, select

from mad.state.db import UtcDateTime, metadata

KIND_LEN, SERVICE_LEN, HOST_LEN = 16, 128, 255

etl_clocks = Table(
    "etl_clocks",
    metadata,
    Column("window", String(8), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("kind", String(KIND_LEN), primary_key=True),
    Column("service", String(SERVICE_LEN), primary_key=True),
    Column("host", String(HOST_LEN), primary_key=True),  # '' for events without a host
    Column("newest_event", UtcDateTime, nullable=False),  # capped at its ingest hour's end
    Column("newest_ingest", UtcDateTime),  # start of the newest ingest hour
    Column("events", BigInteger, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
)


@dataclass(frozen=True)
class SourceClock:
    """One source's newest (capped) event time, and the newest ingest hour it was seen in."""

    kind: str
    service: str
    host: str
    newest_event: datetime
    newest_ingest: datetime | None
    events: int


def record(conn: Connection, published: Iterable[tuple[str, str]],
           clocks: Sequence[SourceClock]) -> None:
    """Replace the clocks of each `(window, day)` just published by `clocks` (the day's)."""
    now = datetime.now(UTC)
    for window, day in sorted(set(published)):
        conn.execute(etl_clocks.delete().where(and_(etl_clocks.c.window == window,
                                                    etl_clocks.c.day == day)))
        seen: set[tuple[str, str, str]] = set()
        rows = []
        for c in clocks:
            key = (c.kind[:KIND_LEN], c.service[:SERVICE_LEN], c.host[:HOST_LEN])
            if key in seen:  # two long names cut to the same prefix: the first one stays
                continue
            seen.add(key)
            rows.append({"window": window, "day": day, "kind": key[0], "service": key[1],
                         "host": key[2], "newest_event": c.newest_event,
                         "newest_ingest": c.newest_ingest, "events": int(c.events),
                         "computed_at": now})
        if rows:
            conn.execute(etl_clocks.insert(), rows)


class EventClocks:
    """Reads the clocks (detection) and forgets expired days (retention)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def sources(self, window: str) -> list[SourceClock]:
        """Every source of `window` with its newest event time and ingest hour over all days."""
        c = etl_clocks.c
        q = (select(c.kind, c.service, c.host, func.max(c.newest_event),
                    func.max(c.newest_ingest), func.sum(c.events))
             .where(c.window == window).group_by(c.kind, c.service, c.host)
             .order_by(c.kind, c.service, c.host))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [SourceClock(str(k), str(s), str(h), _utc(newest), _utc(ingest) if ingest
                            else None, int(n or 0))
                for k, s, h, newest, ingest, n in rows if newest is not None]

    def forget(self, days: Iterable[str]) -> int:
        """Forget the clocks of event days whose aggregates were deleted on purpose."""
        n = 0
        with self.engine.begin() as conn:
            for day in sorted(set(days)):
                n += int(conn.execute(etl_clocks.delete().where(etl_clocks.c.day == day))
                         .rowcount or 0)
        return n


def _utc(value: datetime) -> datetime:
    """`func.max` of a timestamp comes back as stored, without the column type's conversion
    on SQLite (naive UTC text or datetime): make it aware."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
