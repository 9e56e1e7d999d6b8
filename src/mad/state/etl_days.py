"""Which days' aggregates are current: a version per day of events, and per window the version
its published aggregates were computed from.

- `etl_days`: one row per event day (`YYYY-MM-DD`, UTC) with a `version` that every events run
  writing a partition of that day bumps, in the same transaction that records the run as
  succeeded (`EtlLedger.succeed(changed_days=...)`);
- `etl_aggregates`: per window (`1m`, `5m`, `1h`) and day, the day's version the published
  aggregates were computed from, recorded in the transaction that records the aggregates run.

A day is due for a window while its aggregates row is missing or older than the day's version,
so aggregates a killed or failed pass did not publish are found by the next pass, whatever
that pass reads. The publish replaces whole `window=/date=` partitions, so recomputing a day
twice is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Connection, String, Table, and_, select

from mad.state.db import UtcDateTime, metadata

etl_days = Table(
    "etl_days",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
)

etl_aggregates = Table(
    "etl_aggregates",
    metadata,
    Column("window", String(8), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
)


def bump_days(conn: Connection, days: Iterable[str]) -> None:
    """Bump the version of each day (a day seen for the first time starts at 1)."""
    now = datetime.now(UTC)
    for day in sorted(set(days)):
        current = conn.execute(select(etl_days.c.version).where(
            etl_days.c.day == day)).scalar_one_or_none()
        if current is None:
            conn.execute(etl_days.insert().values(day=day, version=1, changed_at=now))
        else:
            conn.execute(etl_days.update().where(etl_days.c.day == day).values(
                version=current + 1, changed_at=now))


def mark_aggregated(conn: Connection, run_id: str,
                    done: Iterable[tuple[str, str, int]]) -> None:
    """Record `(window, day, version)`: that window's aggregates of the day, computed from that
    version of its events, are published."""
    now = datetime.now(UTC)
    for window, day, version in done:
        conn.execute(etl_aggregates.delete().where(and_(
            etl_aggregates.c.window == window, etl_aggregates.c.day == day)))
        conn.execute(etl_aggregates.insert().values(window=window, day=day, version=version,
                                                    run_id=run_id, computed_at=now))


def due(conn: Connection, windows: Sequence[str]) -> dict[str, tuple[int, list[str]]]:
    """The days some window of `windows` is not current for: day -> (the day's version, those
    windows in the order given), days in order."""
    done: dict[str, dict[str, int]] = {}
    for window, day, version in conn.execute(select(
            etl_aggregates.c.window, etl_aggregates.c.day, etl_aggregates.c.version)):
        done.setdefault(day, {})[window] = int(version)
    out: dict[str, tuple[int, list[str]]] = {}
    for day, version in conn.execute(select(etl_days.c.day, etl_days.c.version)
                                     .order_by(etl_days.c.day)):
        stale = [w for w in windows if done.get(day, {}).get(w, 0) < int(version)]
        if stale:
            out[day] = (int(version), stale)
    return out


def has_days(conn: Connection) -> bool:
    """Whether any day has a version (none: a new database, or one from before this table)."""
    return bool(conn.execute(select(etl_days.c.day).limit(1)).all())


def adopt(conn: Connection, days: Iterable[str], published: Iterable[tuple[str, str]]) -> None:
    """Start the ledger of a lake the ETL wrote before it kept one: each day at version 1,
    and the `(window, day)` aggregates already `published` as computed from it (the rest are
    due)."""
    now = datetime.now(UTC)
    for day in sorted(set(days)):
        conn.execute(etl_days.insert().values(day=day, version=1, changed_at=now))
    mark_aggregated(conn, "adopted", ((w, d, 1) for w, d in sorted(set(published))))
