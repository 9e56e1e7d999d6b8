"""The runtime's state: the health of each supervised component (`runtime_components`) and
the first-start backfill's marker (`runtime_backfill`).

The supervisor reports every component about every 2 s and at each change; a reader (the
dashboard, `GET /health` of another process) treats a report older than `STALE_AFTER_S` as
stale: the supervisor that wrote it is gone. The backfill marker is one row per backfill,
written before the first event is posted (its range fixes its event ids), advanced after
each chunk and marked done at the end, so a backfill is made once and a cut one resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import Column, Engine, Float, Integer, String, Table, Text, select
from sqlalchemy.engine import Connection

from mad.errors import TransientError
from mad.state.db import UtcDateTime, metadata

Status = Literal["starting", "running", "restarting", "stopped", "failed"]
STATUSES: tuple[str, ...] = get_args(Status)
STALE_AFTER_S = 15.0
MAX_NAME = 64
MAX_TEXT = 2000

runtime_components = Table(
    "runtime_components",
    metadata,
    Column("name", String(MAX_NAME), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("pid", Integer),
    Column("restarts", Integer, nullable=False),
    Column("last_exit", Text),
    Column("url", Text),
    Column("detail", Text, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),  # this process or run of it began
    Column("updated_at", UtcDateTime, nullable=False),
)

runtime_backfill = Table(
    "runtime_backfill",
    metadata,
    Column("name", String(MAX_NAME), primary_key=True),
    Column("start", UtcDateTime, nullable=False),  # event time range [start, end)
    Column("end", UtcDateTime, nullable=False),
    Column("rate", Float, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("chunks_done", Integer, nullable=False),  # chunks posted and acknowledged
    Column("lines", Integer, nullable=False),  # lines posted so far
    Column("valid_events", Integer),  # when done
    Column("incidents", Integer),  # when done
    Column("status", String(16), nullable=False),  # posting | done
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
)


@dataclass(frozen=True)
class Report:
    """One component's state as the supervisor sees it."""

    name: str
    status: Status
    pid: int | None
    restarts: int
    last_exit: str | None
    url: str | None
    detail: str = ""


def check_report(report: Report) -> None:
    """ValueError unless the report fits the table (a known status, bounded names)."""
    if report.status not in STATUSES:
        raise ValueError(f"unknown status {report.status!r} (known: {', '.join(STATUSES)})")
    if not report.name or len(report.name) > MAX_NAME:
        raise ValueError(f"component name must be 1 to {MAX_NAME} characters")
    if report.restarts < 0:
        raise ValueError("restarts must be >= 0")


class Components:
    """Reads and writes `runtime_components`; every call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def report(self, name: str, status: Status, pid: int | None, restarts: int,
               last_exit: str | None, url: str | None, detail: str = "") -> None:
        """Upsert the state of component `name`."""
        self.report_many([Report(name, status, pid, restarts, last_exit, url, detail)])

    def report_many(self, reports: list[Report]) -> None:
        """Upsert several components at once (one commit)."""
        for report in reports:
            check_report(report)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for report in reports:
                _upsert(conn, report, now)

    def all(self) -> list[dict[str, Any]]:
        """Every component: name, status, pid, restarts, last_exit, url, detail, started_at,
        updated_at (aware UTC), ordered by name."""
        t = runtime_components
        query = select(t.c.name, t.c.status, t.c.pid, t.c.restarts, t.c.last_exit, t.c.url,
                       t.c.detail, t.c.started_at, t.c.updated_at).order_by(t.c.name)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


def is_stale(row: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether a row of `Components.all()` is older than `STALE_AFTER_S`."""
    now = now or datetime.now(UTC)
    updated: datetime = row["updated_at"]
    return (now - updated).total_seconds() > STALE_AFTER_S


def _upsert(conn: Connection, report: Report, now: datetime) -> None:
    t = runtime_components
    old = conn.execute(select(t.c.status, t.c.pid, t.c.started_at)
                       .where(t.c.name == report.name)).first()
    values = {"status": report.status, "pid": report.pid, "restarts": report.restarts,
              "last_exit": _clip(report.last_exit), "url": _clip(report.url),
              "detail": _clip(report.detail) or "", "updated_at": now}
    if old is None:
        conn.execute(t.insert().values(name=report.name, started_at=now, **values))
        return
    began = old.pid != report.pid or (old.status not in ("starting", "running")
                                      and report.status in ("starting", "running"))
    if began:
        values["started_at"] = now
    conn.execute(t.update().where(t.c.name == report.name).values(**values))


def _clip(text: str | None) -> str | None:
    return text[:MAX_TEXT] if text is not None else None


@dataclass(frozen=True)
class BackfillMark:
    """The marker of one backfill."""

    name: str
    start: datetime
    end: datetime
    rate: float
    seed: int
    chunks_done: int
    lines: int
    valid_events: int | None
    incidents: int | None
    status: str
    started_at: datetime
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.status == "done"


class Backfills:
    """Reads and writes `runtime_backfill`; every call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> BackfillMark | None:
        t = runtime_backfill
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.name == name)).first()
        return BackfillMark(**row._mapping) if row is not None else None

    def begin(self, name: str, start: datetime, end: datetime, rate: float,
              seed: int) -> BackfillMark:
        """Record a new backfill over [start, end) before anything is posted; returns the
        marker already there if another one began first."""
        with self.engine.begin() as conn:
            t = runtime_backfill
            if conn.execute(select(t.c.name).where(t.c.name == name)).first() is None:
                conn.execute(t.insert().values(
                    name=name, start=start, end=end, rate=rate, seed=seed, chunks_done=0,
                    lines=0, status="posting", started_at=datetime.now(UTC)))
        mark = self.get(name)
        if mark is None:
            raise TransientError(f"the backfill marker {name!r} vanished as it was written")
        return mark

    def progress(self, name: str, chunks_done: int, lines: int) -> None:
        """`chunks_done` chunks (holding `lines` lines in all) are acknowledged."""
        t = runtime_backfill
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.name == name, t.c.status == "posting")
                         .values(chunks_done=chunks_done, lines=lines))

    def finish(self, name: str, lines: int, valid_events: int, incidents: int) -> None:
        t = runtime_backfill
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.name == name).values(
                status="done", lines=lines, valid_events=valid_events, incidents=incidents,
                finished_at=datetime.now(UTC)))
