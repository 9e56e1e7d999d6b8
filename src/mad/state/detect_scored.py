"""What detection scored each window with, what changed after, and the watermark it scored to.

- `detect_watermarks`: per window size, the completeness watermark of the last pass
  (`mad.detect.watermark`): the instant, what it came from, how many sources counted and how
  many were left out as idle, the ingest floor. A restart starts from it (the watermark never
  goes back), and `mad detect status` shows it.
- `detect_scored`: per window size x service x series x window start, the `count` of the
  aggregate row when it was scored. Kept for `detect.late_horizon_hours` behind the watermark.
- `detect_late`: the windows whose aggregate changed after they were scored (late events:
  the ETL recomputed the day with them): the count they were scored with, the count now, when
  the change was first and last seen. They are not scored again; this is where they show.

Each method is one transaction. Writes are upserts keyed by the window, so a replay after a
crash writes the same rows over themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    String,
    Table,
    and_,
    desc,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from mad.state.db import UtcDateTime, metadata

EVENTS_SERIES = "events"  # the aggregates' per-window event count of a service

detect_watermarks = Table(
    "detect_watermarks",
    metadata,
    Column("window", String(8), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("basis", String(32), nullable=False),
    Column("sources", Integer, nullable=False),
    Column("idle", Integer, nullable=False),
    Column("ingest_floor", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)

detect_scored = Table(
    "detect_scored",
    metadata,
    Column("window", String(8), primary_key=True),
    Column("service", String(128), primary_key=True),
    Column("series", String(128), primary_key=True),
    Column("window_start", UtcDateTime, primary_key=True),
    Column("count", BigInteger, nullable=False),  # -1: no count in the row
)
Index("ix_detect_scored_start", detect_scored.c.window, detect_scored.c.window_start)

detect_late = Table(
    "detect_late",
    metadata,
    Column("window", String(8), primary_key=True),
    Column("service", String(128), primary_key=True),
    Column("series", String(128), primary_key=True),
    Column("window_start", UtcDateTime, primary_key=True),
    Column("scored_count", BigInteger, nullable=False),  # 0: the window was not there
    Column("count", BigInteger, nullable=False),
    Column("first_found", UtcDateTime, nullable=False, index=True),
    Column("last_found", UtcDateTime, nullable=False),
)

Key = tuple[str, str]


@dataclass(frozen=True)
class SavedWatermark:
    at: datetime
    basis: str
    sources: int
    idle: int
    ingest_floor: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class LateWindow:
    """A window found changed after it was scored, in this comparison."""

    service: str
    series: str
    window_start: datetime
    scored_count: int  # what it was scored with (0: it was not in the lake then)
    count: int  # now
    before: int  # what the previous comparison saw (scored_count the first time)

    @property
    def added(self) -> int:
        """Events added since the previous comparison (counted on the `events` series)."""
        return max(0, self.count - self.before) if self.series == EVENTS_SERIES else 0


class ScoredStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- the watermark ---------------------------------------------------------------------

    def watermark(self, window: str) -> SavedWatermark | None:
        q = select(detect_watermarks).where(detect_watermarks.c.window == window)
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        if r is None:
            return None
        return SavedWatermark(r.at, str(r.basis), int(r.sources), int(r.idle), r.ingest_floor,
                              r.updated_at)

    def save_watermark(self, window: str, at: datetime, basis: str, sources: int, idle: int,
                       ingest_floor: datetime | None) -> None:
        """Upsert the window size's watermark (one statement: detection workers sharing a
        window size may save it at the same time)."""
        values = {"window": window, "at": at, "basis": basis[:32], "sources": sources,
                  "idle": idle, "ingest_floor": ingest_floor, "updated_at": datetime.now(UTC)}
        with self.engine.begin() as conn:
            dialect = conn.dialect.name
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
                statement = insert(detect_watermarks).values(**values)
                conn.execute(statement.on_conflict_do_update(
                    index_elements=["window"],
                    set_={k: statement.excluded[k] for k in values if k != "window"}))
                return
            conn.execute(detect_watermarks.delete().where(detect_watermarks.c.window == window))
            conn.execute(detect_watermarks.insert().values(**values))

    # -- what was scored -------------------------------------------------------------------

    def record(self, window: str, counts: Mapping[Key, Mapping[datetime, int]]) -> None:
        """Save the count each window was scored with (replacing what a replay saved)."""
        c = detect_scored.c
        with self.engine.begin() as conn:
            rows = []
            for (service, series), by_start in sorted(counts.items()):
                if not by_start:
                    continue
                conn.execute(detect_scored.delete().where(and_(
                    c.window == window, c.service == service, c.series == series,
                    c.window_start >= min(by_start), c.window_start <= max(by_start))))
                rows += [{"window": window, "service": service, "series": series,
                          "window_start": start, "count": int(n)}
                         for start, n in sorted(by_start.items())]
            if rows:
                conn.execute(detect_scored.insert(), rows)

    def since(self, window: str) -> datetime | None:
        """The oldest window start whose scored count is kept (None: none is)."""
        q = select(func.min(detect_scored.c.window_start)).where(
            detect_scored.c.window == window)
        with self.engine.connect() as conn:
            value = conn.execute(q).scalar_one_or_none()
        return _utc(value) if value is not None else None

    def prune(self, window: str, before: datetime) -> int:
        """Forget the scored counts of windows before `before` (past the late horizon)."""
        with self.engine.begin() as conn:
            return int(conn.execute(detect_scored.delete().where(and_(
                detect_scored.c.window == window, detect_scored.c.window_start < before)))
                .rowcount or 0)

    def compare(self, window: str, start: datetime, end: datetime,
                current: Mapping[Key, Mapping[datetime, int]]) -> list[LateWindow]:
        """Compare the counts in the lake now of windows in [start, end) that were scored
        (`current`: only windows at or before their series' watermark) with the counts they
        were scored with; record and return those that changed since the last comparison."""
        c = detect_scored.c
        in_range = and_(c.window == window, c.window_start >= start, c.window_start < end)
        found: list[LateWindow] = []
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            totals = {(str(s), str(r)): (int(n), int(t or 0)) for s, r, n, t in conn.execute(
                select(c.service, c.series, func.count(), func.sum(c.count))
                .where(in_range).group_by(c.service, c.series))}
            for key, by_start in sorted(current.items()):
                if not by_start or totals.get(key) == (len(by_start), sum(by_start.values())):
                    continue  # the same windows with the same counts: nothing changed
                scored = {_utc(t): int(n) for t, n in conn.execute(
                    select(c.window_start, c.count).where(and_(
                        in_range, c.service == key[0], c.series == key[1])))}
                for when, n in sorted(by_start.items()):
                    if scored.get(when) != n:
                        late = self._note(conn, window, key, when, scored.get(when, 0), n, now)
                        if late is not None:
                            found.append(late)
        return found

    def _note(self, conn: Any, window: str, key: Key, when: datetime, scored: int, count: int,
              now: datetime) -> LateWindow | None:
        """Record one changed window; None when the last comparison already saw this count."""
        c = detect_late.c
        where = and_(c.window == window, c.service == key[0], c.series == key[1],
                     c.window_start == when)
        old = conn.execute(select(c.scored_count, c.count.label("seen"), c.first_found)
                           .where(where)).first()
        if old is not None and int(old.seen) == count:
            return None
        first = scored if old is None else int(old.scored_count)
        before = scored if old is None else int(old.seen)
        conn.execute(detect_late.delete().where(where))
        conn.execute(detect_late.insert().values(
            window=window, service=key[0], series=key[1], window_start=when,
            scored_count=first, count=count,
            first_found=now if old is None else old.first_found, last_found=now))
        return LateWindow(key[0], key[1], when, first, count, before)

    # -- what status shows -----------------------------------------------------------------

    def late(self, window: str, limit: int = 10) -> dict[str, Any]:
        """`windows` changed after scoring, `events` added to them (on the `events` series),
        the `last_found` time, and the newest `limit` of them (`recent`)."""
        c = detect_late.c
        added = func.sum(c.count - c.scored_count)
        with self.engine.connect() as conn:
            windows, last = conn.execute(select(func.count(), func.max(c.last_found))
                                         .where(c.window == window)).one()
            events = conn.execute(select(added).where(and_(
                c.window == window, c.series == EVENTS_SERIES,
                c.count > c.scored_count))).scalar_one_or_none()
            recent = [{"service": r.service, "series": r.series,
                       "window_start": _utc(r.window_start), "scored_count": int(r.scored_count),
                       "count": int(r._mapping["count"]), "first_found": _utc(r.first_found),
                       "last_found": _utc(r.last_found)}
                      for r in conn.execute(select(detect_late).where(c.window == window)
                                            .order_by(desc(c.last_found), desc(c.window_start),
                                                      c.service, c.series).limit(limit))]
        return {"windows": int(windows or 0), "events": int(events or 0),
                "last_found": _utc(last) if last is not None else None, "recent": recent}


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
