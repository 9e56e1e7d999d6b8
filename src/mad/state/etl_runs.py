"""ETL bookkeeping in the state database: runs, the raw files they read, the partitions they wrote.

- `etl_runs`: one row per run (plan, engine, status, counts, duration, error, attempt).
- `etl_inputs`: one row per raw file and the run that read it; a file is done when that run
  succeeded. A run killed mid-way leaves its files pending, so the next run reads them again
  (the transform deduplicates by `event_id`, so nothing is counted twice).
- `etl_outputs`: every partition each run wrote (what `mad etl reprocess` re-reads).
- `etl_partitions`: the last run that replaced each output partition, with rows and bytes.
- `etl_run_counts`: the counts of a run beyond the columns of `etl_runs`, one row per name
  (`reused`: lines whose `event_id` another event hour holds; `unreadable`: raw files
  quarantined whole), so a new count needs no new column.

Which days' aggregates are current is kept beside them (`mad.state.etl_days`), written in the
same transactions as the runs that change it, and so are the source clocks of the days whose
aggregates a run published (`mad.state.event_clocks`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    and_,
    desc,
    func,
    select,
)

from mad.lake import TRANSFORMED_DATASETS
from mad.state import etl_days, event_clocks
from mad.state.db import UtcDateTime, delete_partitions, metadata

etl_runs = Table(
    "etl_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("plan", String(64), nullable=False),
    Column("engine", String(32), nullable=False),
    Column("status", String(16), nullable=False, index=True),  # running|succeeded|failed
    Column("attempt", Integer, nullable=False, default=1),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("duration_s", Float),
    Column("files_in", Integer, nullable=False, default=0),
    Column("rows_in", BigInteger),
    Column("rows_out", BigInteger),
    Column("duplicates", BigInteger),
    Column("quarantined", BigInteger),
    Column("late", BigInteger),
    Column("partitions", Integer),
    Column("error", Text),
)

etl_inputs = Table(
    "etl_inputs",
    metadata,
    Column("plan", String(64), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("bytes", BigInteger),
)

etl_outputs = Table(
    "etl_outputs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("dataset", String(128), primary_key=True),
    Column("partition", String(256), primary_key=True),
)

etl_partitions = Table(
    "etl_partitions",
    metadata,
    Column("dataset", String(128), primary_key=True),
    Column("partition", String(256), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("files", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

etl_run_counts = Table(
    "etl_run_counts",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

COUNTS = ("rows_in", "rows_out", "duplicates", "quarantined", "late", "partitions")


@dataclass(frozen=True)
class Written:
    dataset: str
    partition: str
    rows: int
    files: int
    bytes: int


class EtlLedger:
    """Reads and writes the ETL tables; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self, plan: str, engine: str, keys: Sequence[tuple[str, int]],
              attempt: int = 1) -> str:
        """Record a running run and claim its input files; returns the run id."""
        run_id = f"{plan}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        with self.engine.begin() as conn:
            conn.execute(etl_runs.insert().values(
                run_id=run_id, plan=plan, engine=engine, status="running", attempt=attempt,
                started_at=datetime.now(UTC), files_in=len(keys)))
            for key, nbytes in keys:
                conn.execute(etl_inputs.delete().where(
                    and_(etl_inputs.c.plan == plan, etl_inputs.c.key == key)))
                conn.execute(etl_inputs.insert().values(plan=plan, key=key, run_id=run_id,
                                                        bytes=nbytes))
        return run_id

    def succeed(self, run_id: str, counts: dict[str, int], written: Iterable[Written],
                changed_days: Iterable[str] = (),
                aggregated: Iterable[tuple[str, str, int]] = (),
                clocks: Sequence[event_clocks.SourceClock] = ()) -> None:
        """Record the run as succeeded with its counts (names beyond the columns go to
        `etl_run_counts`) and the partitions it wrote; in the same transaction, bump the
        version of the event days it changed and record the `(window, day, version)`
        aggregates it published (`mad.state.etl_days`) with `clocks`, the source clocks of
        their day (`mad.state.event_clocks`; a run publishes the aggregates of one day)."""
        aggregated = list(aggregated)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            started = conn.execute(select(etl_runs.c.started_at).where(
                etl_runs.c.run_id == run_id)).scalar_one()
            for w in written:
                conn.execute(etl_outputs.insert().values(run_id=run_id, dataset=w.dataset,
                                                         partition=w.partition))
                conn.execute(etl_partitions.delete().where(and_(
                    etl_partitions.c.dataset == w.dataset,
                    etl_partitions.c.partition == w.partition)))
                conn.execute(etl_partitions.insert().values(
                    dataset=w.dataset, partition=w.partition, run_id=run_id, rows=w.rows,
                    files=w.files, bytes=w.bytes, updated_at=now))
            conn.execute(etl_runs.update().where(etl_runs.c.run_id == run_id).values(
                status="succeeded", finished_at=now,
                duration_s=(now - started).total_seconds(),
                **{k: int(v) for k, v in counts.items() if k in COUNTS}))
            for name, value in sorted(counts.items()):
                if name not in COUNTS:
                    conn.execute(etl_run_counts.insert().values(run_id=run_id, name=name,
                                                                value=int(value)))
            etl_days.bump_days(conn, changed_days)
            etl_days.mark_aggregated(conn, run_id, aggregated)
            if aggregated:
                event_clocks.record(conn, [(w, d) for w, d, _ in aggregated], clocks)

    def fail(self, run_id: str, error: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            started = conn.execute(select(etl_runs.c.started_at).where(
                etl_runs.c.run_id == run_id)).scalar_one()
            conn.execute(etl_runs.update().where(etl_runs.c.run_id == run_id).values(
                status="failed", finished_at=now, duration_s=(now - started).total_seconds(),
                error=error[:4000]))

    def abandon_running(self) -> int:
        """Mark runs left `running` by a killed process as failed; returns how many."""
        with self.engine.begin() as conn:
            result = conn.execute(etl_runs.update().where(etl_runs.c.status == "running").values(
                status="failed", finished_at=datetime.now(UTC),
                error="interrupted: the process stopped before the run finished"))
            return int(result.rowcount or 0)

    def done_keys(self, plan: str) -> set[str]:
        """Raw files a succeeded run of `plan` has read."""
        q = select(etl_inputs.c.key).join(
            etl_runs, etl_runs.c.run_id == etl_inputs.c.run_id
        ).where(and_(etl_inputs.c.plan == plan, etl_runs.c.status == "succeeded"))
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(q)}

    def forget(self, plan: str, keys: Iterable[str]) -> int:
        """Make files pending again (reprocess); returns how many were known."""
        n = 0
        with self.engine.begin() as conn:
            for key in keys:
                n += int(conn.execute(etl_inputs.delete().where(and_(
                    etl_inputs.c.plan == plan, etl_inputs.c.key == key))).rowcount or 0)
        return n

    def drop_partitions(self, partitions: Iterable[tuple[str, str]]) -> int:
        """Forget the ledger rows of `(dataset, partition)`s deleted on purpose (retention):
        reconciliation compares the lake only with what the ledger still holds."""
        return delete_partitions(self.engine, etl_partitions, partitions)

    def sources(self, plan: str, dataset: str, partition: str) -> set[str]:
        """The raw files of every succeeded run that wrote `dataset`/`partition`."""
        runs = select(etl_outputs.c.run_id).where(and_(
            etl_outputs.c.dataset == dataset, etl_outputs.c.partition == partition))
        q = select(etl_inputs.c.key).where(and_(etl_inputs.c.plan == plan,
                                                etl_inputs.c.run_id.in_(runs)))
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(q)}

    def aggregates_due(self, windows: Sequence[str]) -> dict[str, tuple[int, list[str]]]:
        """Days whose aggregates of some of `windows` are missing or older than their events:
        day -> (the day's version, those windows)."""
        with self.engine.connect() as conn:
            return etl_days.due(conn, windows)

    def unversioned_days(self) -> list[str]:
        """The event days of the partitions runs wrote, when no day has a version yet (a state
        database from before days were versioned); empty otherwise."""
        with self.engine.connect() as conn:
            if etl_days.has_days(conn):
                return []
            q = select(etl_partitions.c.partition).where(
                etl_partitions.c.dataset.in_(list(TRANSFORMED_DATASETS.values()))).distinct()
            parts = [str(row[0]) for row in conn.execute(q)]
        return sorted({p.split("/")[0].removeprefix("date=") for p in parts
                       if p.startswith("date=")})

    def recompute_days(self, days: Iterable[str]) -> None:
        """Make the aggregates of `days` due again (the next pass recomputes them), e.g. after
        reconciliation found them short."""
        with self.engine.begin() as conn:
            etl_days.bump_days(conn, days)

    def adopt_days(self, days: Iterable[str], published: Iterable[tuple[str, str]]) -> None:
        """Version `days` (see `unversioned_days`), with the `(window, day)` aggregates already
        in the lake taken as current."""
        with self.engine.begin() as conn:
            etl_days.adopt(conn, days, published)

    def run_counts(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """The `etl_run_counts` of these runs: run id -> name -> value."""
        ids = sorted(set(run_ids))
        out: dict[str, dict[str, int]] = {}
        if not ids:
            return out
        q = select(etl_run_counts).where(etl_run_counts.c.run_id.in_(ids))
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                out.setdefault(row.run_id, {})[row.name] = int(row.value)
        return out

    def count_totals(self, plan: str) -> dict[str, int]:
        """The `etl_run_counts` of every succeeded run of `plan`, summed by name."""
        q = (select(etl_run_counts.c.name, func.sum(etl_run_counts.c.value))
             .join(etl_runs, etl_runs.c.run_id == etl_run_counts.c.run_id)
             .where(and_(etl_runs.c.plan == plan, etl_runs.c.status == "succeeded"))
             .group_by(etl_run_counts.c.name))
        with self.engine.connect() as conn:
            return {str(name): int(total or 0) for name, total in conn.execute(q)}

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        q = select(etl_runs).order_by(desc(etl_runs.c.started_at)).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(q)]

    def totals(self) -> dict[str, int]:
        """Runs by status."""
        q = select(etl_runs.c.status, func.count()).group_by(etl_runs.c.status)
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(q)}

    def partitions(self, dataset: str | None = None) -> list[dict[str, Any]]:
        q = select(etl_partitions).order_by(etl_partitions.c.dataset,
                                            etl_partitions.c.partition)
        if dataset is not None:
            q = q.where(etl_partitions.c.dataset == dataset)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(q)]
