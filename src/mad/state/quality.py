"""Quality history and the write-audit-publish gate in the state database.

- `quality_results`: every metric every check measured, one tidy row each (run, dataset,
  partition, check, column, metric, value, threshold, status, severity, detail). Kept for
  history: the volume, distribution and drift checks read earlier rows of the same metric.
- `quality_scores`: the score of each partition and of each run, with its parts (JSON).
- `quality_gate`: the gate's current verdict per partition: `open` (passed), `held` (an
  error-severity check that gates failed; kept in the lake, hidden from detection and the
  dashboard's reads), or `accepted` (an operator let it through, with who and why).
- `quality_decisions`: every change of a verdict, for the audit trail.

A later run that writes a held partition again re-judges it: when its gating checks pass,
it opens by itself (`released`); an accepted partition stays accepted until a run finds a
new failure in it.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
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

from mad.quality.model import Result
from mad.state.db import UtcDateTime, delete_partitions, metadata

quality_results = Table(
    "quality_results",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("dataset", String(128), nullable=False),
    Column("partition", String(256), nullable=False),
    Column("check", String(32), nullable=False),
    Column("column", String(128), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("threshold", Float),
    Column("status", String(8), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("gate", Integer, nullable=False, default=0),
    Column("detail", Text, nullable=False, default=""),
    Column("measured_at", UtcDateTime, nullable=False, index=True),
)

quality_scores = Table(
    "quality_scores",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("dataset", String(128), primary_key=True),
    Column("partition", String(256), primary_key=True),  # `*`: the run as a whole
    Column("score", Float, nullable=False),
    Column("parts", Text, nullable=False),  # JSON {part: score 0..100}
    Column("failed", Integer, nullable=False),
    Column("warned", Integer, nullable=False),
    Column("measured_at", UtcDateTime, nullable=False, index=True),
)

quality_gate = Table(
    "quality_gate",
    metadata,
    Column("dataset", String(128), primary_key=True),
    Column("partition", String(256), primary_key=True),
    Column("status", String(16), nullable=False, index=True),  # open | held | accepted
    Column("run_id", String(64), nullable=False),  # the run that judged it last
    Column("reason", Text, nullable=False, default=""),  # the failed gating checks
    Column("updated_at", UtcDateTime, nullable=False),
    Column("accepted_by", String(128)),
    Column("accepted_reason", Text),
    Column("accepted_at", UtcDateTime),
)

quality_decisions = Table(
    "quality_decisions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("dataset", String(128), nullable=False),
    Column("partition", String(256), nullable=False),
    Column("decision", String(16), nullable=False),  # held | released | accepted
    Column("run_id", String(64)),
    Column("by", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False, index=True),
)


@dataclass(frozen=True)
class Score:
    dataset: str
    partition: str
    score: float
    parts: dict[str, float]
    failed: int
    warned: int


class NotHeld(LookupError):
    """`accept` named a partition the gate does not hold."""


class QualityStore:
    """Reads and writes the quality tables; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writing ---------------------------------------------------------------------------

    def record(self, run_id: str, results: Sequence[Result], scores: Sequence[Score],
               judged: dict[tuple[str, str], list[Result]]) -> list[tuple[str, str, str]]:
        """Store a run's results and scores and re-judge the gate of every partition in
        `judged` ((dataset, partition) -> its gating failures, empty when it passed), in one
        transaction; returns the gate changes `(dataset, partition, decision)`."""
        now = datetime.now(UTC)
        changes: list[tuple[str, str, str]] = []
        with self.engine.begin() as conn:
            if results:
                conn.execute(quality_results.insert(), [_result_row(run_id, r, now)
                                                        for r in results])
            for s in scores:
                conn.execute(quality_scores.delete().where(and_(
                    quality_scores.c.run_id == run_id, quality_scores.c.dataset == s.dataset,
                    quality_scores.c.partition == s.partition)))
                conn.execute(quality_scores.insert().values(
                    run_id=run_id, dataset=s.dataset, partition=s.partition, score=s.score,
                    parts=orjson.dumps(s.parts).decode(), failed=s.failed, warned=s.warned,
                    measured_at=now))
            for (dataset, partition), failures in sorted(judged.items()):
                change = self._judge(conn, run_id, dataset, partition, failures, now)
                if change:
                    changes.append((dataset, partition, change))
        return changes

    def _judge(self, conn: Any, run_id: str, dataset: str, partition: str,
               failures: list[Result], now: datetime) -> str | None:
        where = and_(quality_gate.c.dataset == dataset, quality_gate.c.partition == partition)
        row = conn.execute(select(quality_gate).where(where)).first()
        reason = "; ".join(f"{r.check} {r.column} {r.metric} = {r.value:g}"
                           + (f" (threshold {r.threshold:g})" if r.threshold is not None else "")
                           for r in failures)[:4000]
        before = row.status if row is not None else None
        if failures:
            status = "held"
            if before == "accepted" and row is not None and row.reason == reason:
                status = "accepted"  # the same failures an operator already let through
        else:
            status = "open"
        values = {"status": status, "run_id": run_id, "reason": reason, "updated_at": now}
        if row is None:
            conn.execute(quality_gate.insert().values(dataset=dataset, partition=partition,
                                                      **values))
        else:
            conn.execute(quality_gate.update().where(where).values(**values))
        decision = None
        if status == "held" and before != "held":
            decision = "held"
        elif status == "open" and before in ("held", "accepted"):
            decision = "released"
        if decision:
            conn.execute(quality_decisions.insert().values(
                dataset=dataset, partition=partition, decision=decision, run_id=run_id,
                by="quality", reason=reason or "every gating check passed", at=now))
        return decision

    def accept(self, partition: str, reason: str, by: str | None = None,
               dataset: str | None = None) -> list[tuple[str, str]]:
        """Let a held partition through: every held (dataset, `partition`) (or only that
        `dataset`'s) becomes `accepted`, recorded with who and why; returns those accepted.
        Raises NotHeld when nothing matching is held."""
        who = by or _who()
        now = datetime.now(UTC)
        cond = and_(quality_gate.c.partition == partition, quality_gate.c.status == "held")
        if dataset is not None:
            cond = and_(cond, quality_gate.c.dataset == dataset)
        with self.engine.begin() as conn:
            rows = conn.execute(select(quality_gate.c.dataset, quality_gate.c.run_id)
                                .where(cond)).all()
            if not rows:
                raise NotHeld(partition)
            for ds, run_id in rows:
                where = and_(quality_gate.c.dataset == ds,
                             quality_gate.c.partition == partition)
                conn.execute(quality_gate.update().where(where).values(
                    status="accepted", accepted_by=who, accepted_reason=reason,
                    accepted_at=now, updated_at=now))
                conn.execute(quality_decisions.insert().values(
                    dataset=ds, partition=partition, decision="accepted", run_id=run_id,
                    by=who, reason=reason, at=now))
        return [(str(ds), partition) for ds, _ in rows]

    def prune(self, keep_days: float, superseded_hours: float,
              now: datetime | None = None) -> int:
        """Bound the history: delete results and scores measured more than `keep_days` ago,
        and results of a partition measured more than `superseded_hours` ago that a newer
        measurement of the same metric and partition replaced (a live pass measures the
        current hour every minute; the history keeps the last word on each hour). The run
        level results (`*`), the gate and its decisions are kept. Returns rows deleted."""
        now = now or datetime.now(UTC)
        c = quality_results.c
        old = now - timedelta(days=keep_days)
        stale = now - timedelta(hours=superseded_hours)
        newest = (select(func.max(c.id)).where(c.partition != "*")
                  .group_by(c.dataset, c.check, c.column, c.metric, c.partition))
        with self.engine.begin() as conn:
            gone = conn.execute(quality_results.delete().where(c.measured_at < old)).rowcount
            gone += conn.execute(quality_results.delete().where(and_(
                c.measured_at < stale, c.partition != "*",
                c.id.not_in(newest.scalar_subquery())))).rowcount
            gone += conn.execute(quality_scores.delete().where(
                quality_scores.c.measured_at < old)).rowcount
        return int(gone)

    def forget(self, partitions: Iterable[tuple[str, str]]) -> int:
        """Drop the gate's verdicts of `(dataset, partition)`s deleted on purpose (retention);
        their decisions stay in the audit trail."""
        return delete_partitions(self.engine, quality_gate, partitions)

    # -- reading ---------------------------------------------------------------------------

    def held(self, datasets: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The partitions the gate holds now, oldest partition first."""
        q = select(quality_gate).where(quality_gate.c.status == "held")
        if datasets is not None:
            q = q.where(quality_gate.c.dataset.in_(list(datasets)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                q.order_by(quality_gate.c.partition, quality_gate.c.dataset))]

    def held_days(self, datasets: Iterable[str]) -> set[str]:
        """The `date=` days with at least one held partition of `datasets`."""
        return {str(r["partition"]).split("/")[0].removeprefix("date=")
                for r in self.held(datasets) if str(r["partition"]).startswith("date=")}

    def gate_rows(self, limit: int = 500) -> list[dict[str, Any]]:
        """Every partition's verdict, held first, then by most recent."""
        q = select(quality_gate).order_by(
            (quality_gate.c.status != "held"), desc(quality_gate.c.updated_at)).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def decisions(self, limit: int = 200) -> list[dict[str, Any]]:
        q = select(quality_decisions).order_by(desc(quality_decisions.c.at),
                                               desc(quality_decisions.c.id)).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def results(self, since: datetime | None = None, partition: str | None = None,
                run_id: str | None = None, limit: int = 100_000) -> list[dict[str, Any]]:
        """Result rows, newest first (filtered by time, partition or run)."""
        q = select(quality_results)
        if since is not None:
            q = q.where(quality_results.c.measured_at >= since)
        if partition is not None:
            q = q.where(quality_results.c.partition == partition)
        if run_id is not None:
            q = q.where(quality_results.c.run_id == run_id)
        q = q.order_by(desc(quality_results.c.measured_at), desc(quality_results.c.id))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.limit(limit))]

    def latest(self, dataset: str, check: str, column: str, metric: str,
               partitions: Iterable[str] | None = None,
               limit: int = 2000) -> dict[str, float]:
        """The latest value of one metric per partition: partition -> value (the history the
        volume, distribution and drift checks compare with)."""
        c = quality_results.c
        cond = and_(c.dataset == dataset, c.check == check, c.column == column,
                    c.metric == metric)
        if partitions is not None:
            cond = and_(cond, c.partition.in_(sorted(set(partitions))))
        newest = (select(c.partition, func.max(c.id).label("id")).where(cond)
                  .group_by(c.partition).subquery())
        q = (select(c.partition, c.value).join(newest, newest.c.id == c.id)
             .order_by(desc(c.partition)).limit(limit))
        with self.engine.connect() as conn:
            return {str(p): float(v) for p, v in conn.execute(q)}

    def window(self, dataset: str, first: str, last: str
               ) -> dict[tuple[str, str, str], dict[str, float]]:
        """The latest value of every metric of `dataset` per partition from `first` to
        `last` (partition names, compared as text: `date=...` names sort by time), in one
        query: (check, column, metric) -> {partition: value}. The history a run's checks
        read, loaded once."""
        c = quality_results.c
        cond = and_(c.dataset == dataset, c.partition >= first, c.partition <= last)
        newest = (select(func.max(c.id).label("id")).where(cond)
                  .group_by(c.check, c.column, c.metric, c.partition).subquery())
        q = select(c.check, c.column, c.metric, c.partition, c.value).join(
            newest, newest.c.id == c.id)
        out: dict[tuple[str, str, str], dict[str, float]] = {}
        with self.engine.connect() as conn:
            for check, column, metric, partition, value in conn.execute(q):
                out.setdefault((str(check), str(column), str(metric)), {})[
                    str(partition)] = float(value)
        return out

    def scores(self, since: datetime | None = None, partition: str | None = None,
               limit: int = 5000) -> list[dict[str, Any]]:
        q = select(quality_scores)
        if since is not None:
            q = q.where(quality_scores.c.measured_at >= since)
        if partition is not None:
            q = q.where(quality_scores.c.partition == partition)
        q = q.order_by(desc(quality_scores.c.measured_at)).limit(limit)
        with self.engine.connect() as conn:
            out = []
            for r in conn.execute(q):
                row = dict(r._mapping)
                row["parts"] = orjson.loads(row["parts"])
                out.append(row)
            return out

    def counters(self) -> dict[str, Any]:
        """Totals for `/metrics`: results by check and status, partitions by gate status,
        and the score of the newest ETL run (the pass's reconciliation is not a run)."""
        c = quality_results.c
        with self.engine.connect() as conn:
            by_check = {(str(ch), str(st)): int(n) for ch, st, n in conn.execute(
                select(c.check, c.status, func.count()).group_by(c.check, c.status))}
            gate = {str(st): int(n) for st, n in conn.execute(
                select(quality_gate.c.status, func.count()).group_by(quality_gate.c.status))}
            last = conn.execute(select(quality_scores.c.score).where(and_(
                quality_scores.c.partition == "*",
                quality_scores.c.run_id.not_like("reconcile-%"))).order_by(
                desc(quality_scores.c.measured_at)).limit(1)).scalar()
        return {"results": by_check, "gate": gate,
                "last_run_score": None if last is None else float(last)}


def _result_row(run_id: str, r: Result, now: datetime) -> dict[str, Any]:
    return {"run_id": run_id, "dataset": r.dataset, "partition": r.partition,
            "check": r.check, "column": r.column, "metric": r.metric, "value": float(r.value),
            "threshold": r.threshold, "status": r.status, "severity": r.severity,
            "gate": int(r.gate), "detail": r.detail[:2000], "measured_at": now}


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
