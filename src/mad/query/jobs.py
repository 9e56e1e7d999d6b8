"""The Jobs view: ETL runs (`etl_runs`) and detection passes (`detect_runs`), one list, and
their success and failure rates over time.

A run still going has status `running` and no end; a detection pass is recorded once it is
over, and only when it scored windows, sent alerts or failed (`mad.state.detect_runs`).
A missing state database is a ConfigError; a database from before `detect_runs` simply has no
detection passes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, desc, select

from mad.config import Settings
from mad.query.access import DB_ERRORS, QueryError, buckets, check_range, state_db, utc
from mad.state import DetectRuns
from mad.state.detect_runs import detect_runs
from mad.state.etl_runs import etl_runs

KINDS = ("etl", "detect")
MAX_LIMIT = 5000
MAX_DAYS = 400.0


def _check(kind: str | None, limit: int) -> None:
    if kind is not None and kind not in KINDS:
        raise QueryError(f"unknown job kind {kind!r}; known: {', '.join(KINDS)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")


def _bounds(start: datetime | None, end: datetime | None) -> tuple[datetime | None,
                                                                  datetime | None]:
    if start is not None and end is not None:
        return check_range(start, end, MAX_DAYS)
    return (None if start is None else utc(start)), (None if end is None else utc(end))


def jobs(settings: Settings, start: datetime | None = None, end: datetime | None = None,
         kind: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest `limit` jobs started within `[start, end)` (either end open), newest first:
    `id`, `kind` (etl | detect), `plan` (events, aggregates, compact; detect_<window>),
    `status` (running | succeeded | failed), `started`, `ended`, `duration_s`, `rows_in`,
    `rows_out` (detection: series windows scored, anomalies), `duplicates`, `late`
    (None for detection), `attempts`, `error`, and `detail` (the rest of the row: engine,
    files, quarantined, partitions; windows, changes, alerts, scored_to)."""
    _check(kind, limit)
    start, end = _bounds(start, end)
    out: list[dict[str, Any]] = []
    with state_db(settings) as engine:
        if kind in (None, "etl"):
            out += _etl_jobs(engine, start, end, limit)
        if kind in (None, "detect"):
            out += _detect_jobs(engine, start, end, limit)
    out.sort(key=lambda j: (j["started"], j["id"]), reverse=True)
    return out[:limit]


def _etl_jobs(engine: Engine, start: datetime | None, end: datetime | None,
              limit: int) -> list[dict[str, Any]]:
    t = etl_runs
    conds = []
    if start is not None:
        conds.append(t.c.started_at >= start)
    if end is not None:
        conds.append(t.c.started_at < end)
    q = select(t)
    if conds:
        q = q.where(and_(*conds))
    q = q.order_by(desc(t.c.started_at), t.c.run_id).limit(limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    return [{
        "id": r["run_id"], "kind": "etl", "plan": r["plan"], "status": r["status"],
        "started": r["started_at"], "ended": r["finished_at"], "duration_s": r["duration_s"],
        "rows_in": r["rows_in"], "rows_out": r["rows_out"], "duplicates": r["duplicates"],
        "late": r["late"], "attempts": r["attempt"], "error": r["error"],
        "detail": {"engine": r["engine"], "files_in": r["files_in"],
                   "quarantined": r["quarantined"], "partitions": r["partitions"]},
    } for r in rows]


def _detect_jobs(engine: Engine, start: datetime | None, end: datetime | None,
                 limit: int) -> list[dict[str, Any]]:
    try:
        rows = DetectRuns(engine).recent(limit, start=start, end=end)
    except DB_ERRORS:  # a state database from before detect_runs
        return []
    return [{
        "id": r["run_id"], "kind": "detect", "plan": f"detect_{r['window']}",
        "status": r["status"], "started": r["started_at"], "ended": r["finished_at"],
        "duration_s": r["duration_s"], "rows_in": r["points"], "rows_out": r["anomalies"],
        "duplicates": r["duplicates"], "late": None, "attempts": 1, "error": r["error"],
        "detail": {"window": r["window"], "windows": r["windows"], "changes": r["changes"],
                   "alerts": r["alerts"], "scored_to": r["scored_to"]},
    } for r in rows]


def job_rates(settings: Settings, start: datetime, end: datetime,
              bucket: str = "1h") -> list[dict[str, Any]]:
    """Per bucket of `[start, end)` (at most RATES_MAX_DAYS; every bucket, empty ones too)
    and kind, of the jobs started in it that are over: `bucket_start`, `kind`, `ok`,
    `failed` and `success_rate` (ok / (ok + failed), None for a bucket with none)."""
    start, end, first, step, count = buckets(start, end, bucket)
    tally = {(n, k): [0, 0] for n in range(count) for k in KINDS}
    with state_db(settings) as engine:
        outcomes = _outcomes(engine, start, end)
    for kind, started, status in outcomes:
        n = int((started - first).total_seconds() // step)
        if (n, kind) in tally and status != "running":
            tally[(n, kind)][status != "succeeded"] += 1
    return [{"bucket_start": first + timedelta(seconds=n * step), "kind": kind, "ok": ok,
             "failed": failed, "success_rate": ok / (ok + failed) if ok + failed else None}
            for (n, kind), (ok, failed) in sorted(tally.items())]


def _outcomes(engine: Engine, start: datetime, end: datetime) -> list[tuple[str, datetime, str]]:
    """(kind, started, status) of every job started within `[start, end)`."""
    out: list[tuple[str, datetime, str]] = []
    tables = (("etl", etl_runs), ("detect", detect_runs))
    with engine.connect() as conn:
        for kind, t in tables:
            q = select(t.c.started_at, t.c.status).where(and_(
                t.c.started_at >= start, t.c.started_at < end))
            try:
                out += [(kind, when, str(status)) for when, status in conn.execute(q)]
            except DB_ERRORS:  # a state database from before detect_runs
                conn.rollback()
    return out
