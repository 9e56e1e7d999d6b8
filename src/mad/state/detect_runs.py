"""Detection passes in the state database, one row per pass that did something.

`detect_runs`: a pass of `DetectRunner.run_once` that scored windows, sent alerts or failed,
with its window size, start and end, status (`succeeded` | `failed`), what it scored (window
starts, series windows, anomalies, incident changes, alerts) and the first line of its
error. A pass that found nothing new leaves no row: a watch loop polls every minute, and the
Jobs view would be all empty passes. A pass killed mid-way leaves no row either; what its
batches committed is in the anomalies, the incidents and `detect_meta` (`progress:<window>`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Float, String, Table, Text, and_, desc, select

from mad.state.db import UtcDateTime, metadata

detect_runs = Table(
    "detect_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("window", String(8), nullable=False),
    Column("status", String(16), nullable=False),  # succeeded | failed
    Column("started_at", UtcDateTime, nullable=False, index=True),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("windows", BigInteger, nullable=False),  # window starts scored
    Column("points", BigInteger, nullable=False),  # series windows scored
    Column("anomalies", BigInteger, nullable=False),
    Column("changes", BigInteger, nullable=False),  # incident changes (one alert each)
    Column("alerts", BigInteger, nullable=False),  # deliveries to sinks
    Column("duplicates", BigInteger, nullable=False),
    Column("scored_to", UtcDateTime),  # the latest window start scored in the pass
    Column("error", Text),
)


@dataclass(frozen=True)
class DetectPass:
    """What one pass did, as `DetectRuns.record` stores it."""

    window: str
    started: datetime
    finished: datetime
    windows: int = 0
    points: int = 0
    anomalies: int = 0
    changes: int = 0
    alerts: int = 0
    duplicates: int = 0
    scored_to: datetime | None = None
    error: str | None = None


class DetectRuns:
    """Reads and writes `detect_runs`; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, run: DetectPass) -> str:
        """Store one pass; returns its id."""
        run_id = f"detect_{run.window}-{run.started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        error = None if run.error is None else (run.error.strip().splitlines() or [""])[0]
        with self.engine.begin() as conn:
            conn.execute(detect_runs.insert().values(
                run_id=run_id, window=run.window,
                status="succeeded" if run.error is None else "failed",
                started_at=run.started, finished_at=run.finished,
                duration_s=(run.finished - run.started).total_seconds(),
                windows=run.windows, points=run.points, anomalies=run.anomalies,
                changes=run.changes, alerts=run.alerts, duplicates=run.duplicates,
                scored_to=run.scored_to, error=None if error is None else error[:2000]))
        return run_id

    def recent(self, limit: int = 200, window: str | None = None,
               start: datetime | None = None, end: datetime | None = None,
               ) -> list[dict[str, Any]]:
        """The newest passes first, at most `limit`, optionally of one window size and
        started within `[start, end)`."""
        q = select(detect_runs)
        conds = []
        if window is not None:
            conds.append(detect_runs.c.window == window)
        if start is not None:
            conds.append(detect_runs.c.started_at >= start.astimezone(UTC))
        if end is not None:
            conds.append(detect_runs.c.started_at < end.astimezone(UTC))
        if conds:
            q = q.where(and_(*conds))
        q = q.order_by(desc(detect_runs.c.started_at), detect_runs.c.run_id).limit(limit)
        with self.engine.connect() as conn:
            return [{str(k): v for k, v in row._mapping.items()} for row in conn.execute(q)]
