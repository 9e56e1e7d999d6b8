"""Data quality as the operator sees it, from the quality tables (`mad.state.quality`): the
report of `mad quality report`, the latest score of each dataset with its parts, the history
of one metric for a chart, the gate's verdicts and decisions, the counters of `/metrics`, and
`accept`, which lets a held partition through (`mad quality accept`, the Quality tab).

The score (`mad.quality.score`), always shown with its parts:

    part  = 100 x mean over the check's judged results of (pass 1, warn 0.5, fail 0)
    score = mean of the parts that have judged results

`skip` (not judged yet) and `info` (counts shown beside the checks) take no part.

Only `accept` writes. A missing state database is a ConfigError; one written before the
quality tables existed reads as empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import and_, desc, func, or_, select

from mad.config import Settings
from mad.quality.model import PARTS, RUN
from mad.query.access import DB_ERRORS, QueryError, state_db, utc
from mad.query.datasets import check_partition
from mad.state import NotHeld, QualityStore
from mad.state.quality import quality_gate, quality_results

FORMULA = ("part = 100 × mean over the check's judged results of (pass 1, warn 0.5, fail 0); "
           "score = mean of the parts that have judged results (skip and info take no part)")
STATUS_ORDER = ("fail", "warn", "pass", "skip", "info")
GATE_STATUSES = ("held", "accepted", "open")
MAX_REASON = 500
MAX_LIMIT = 100_000


@contextmanager
def _store(settings: Settings) -> Iterator[QualityStore]:
    with state_db(settings) as engine:
        yield QualityStore(engine)


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    return limit


def _rank(row: dict[str, Any]) -> int:
    status = str(row.get("status"))
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def ordered(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed first, then warned, passed, skipped and info; within each, the newest run
    first, then by dataset, partition, check, column and metric."""
    rows = sorted(results, key=lambda r: (r["dataset"], r["partition"], r["check"],
                                          r["column"], r["metric"]))
    rows.sort(key=lambda r: r["measured_at"], reverse=True)
    rows.sort(key=_rank)
    return rows


def report(settings: Settings, since: datetime | None = None, partition: str | None = None,
           limit: int = 20_000) -> dict[str, Any]:
    """What `mad quality report` prints: `results` measured since `since` (of one
    `partition` when given; at most `limit`, the newest) in `ordered` order; `counts` (status
    -> results); `runs`, newest first, each `run_id`, `measured_at` and its `scores` (per
    dataset and partition, `*` = the whole run: `score`, `parts`, `failed`, `warned`); `held`
    (the partitions the gate holds now, whatever `since`) and `formula`."""
    _limit(limit)
    if partition is not None and partition != RUN:
        check_partition(partition)
    since = None if since is None else utc(since)
    with _store(settings) as store:
        try:
            results = store.results(since=since, partition=partition, limit=limit)
            scores = store.scores(since=since, partition=partition, limit=limit)
            held = store.held()
        except DB_ERRORS:
            results, scores, held = [], [], []
    runs: dict[str, dict[str, Any]] = {}
    for s in scores:
        run = runs.setdefault(s["run_id"], {"run_id": s["run_id"],
                                            "measured_at": s["measured_at"], "scores": []})
        run["measured_at"] = max(run["measured_at"], s["measured_at"])
        run["scores"].append({k: s[k] for k in ("dataset", "partition", "score", "parts",
                                                "failed", "warned")})
    for run in runs.values():  # the whole run first, then its partitions
        run["scores"].sort(key=lambda s: (s["partition"] != RUN, s["dataset"], s["partition"]))
    counts = {status: 0 for status in STATUS_ORDER}
    for r in results:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    return {"since": since, "partition": partition, "results": ordered(results),
            "counts": counts, "formula": FORMULA,
            "runs": sorted(runs.values(), key=lambda r: r["measured_at"], reverse=True),
            "held": held}


def latest_scores(settings: Settings, runs: int = 200) -> list[dict[str, Any]]:
    """Where each dataset stands now, by dataset: `dataset`, `score` (the mean of `parts`),
    `parts` (each part's score in the newest run that judged it), `runs` (part -> that run),
    `failed` and `warned` (results of those runs), `measured_at` (the newest of them). A pass
    records more than one run (the checks of each ETL run, then a reconciliation of the
    whole lake), each judging some parts; this puts the latest judgement of each together.
    Looks at the run-level scores of the newest `runs` runs."""
    _limit(runs)
    with _store(settings) as store:
        try:
            rows = [s for s in store.scores(limit=MAX_LIMIT) if s["partition"] == RUN]
        except DB_ERRORS:
            rows = []
    seen_runs: list[str] = []
    out: dict[str, dict[str, Any]] = {}
    for s in rows:  # newest first
        if s["run_id"] not in seen_runs:
            if len(seen_runs) >= runs:
                break
            seen_runs.append(s["run_id"])
        entry = out.setdefault(s["dataset"], {
            "dataset": s["dataset"], "score": None, "parts": {}, "runs": {}, "failed": 0,
            "warned": 0, "measured_at": s["measured_at"]})
        fresh = [p for p in s["parts"] if p not in entry["parts"]]
        for part in fresh:
            entry["parts"][part] = float(s["parts"][part])
            entry["runs"][part] = s["run_id"]
        if fresh:
            entry["failed"] += int(s["failed"])
            entry["warned"] += int(s["warned"])
    for entry in out.values():
        parts = entry["parts"] = dict(sorted(entry["parts"].items(), key=_part_order))
        entry["runs"] = dict(sorted(entry["runs"].items(), key=_part_order))
        entry["score"] = round(sum(parts.values()) / len(parts), 2) if parts else None
    return [out[name] for name in sorted(out)]


def _part_order(item: tuple[str, Any]) -> tuple[int, str]:
    return (PARTS.index(item[0]) if item[0] in PARTS else len(PARTS), item[0])


def metrics(settings: Settings) -> list[dict[str, Any]]:
    """Every metric measured, by dataset, check, column and metric: those four, `results`
    (how many rows) and `last` (when last measured); the choices of `history`."""
    c = quality_results.c
    q = (select(c.dataset, c.check, c.column, c.metric, func.count().label("results"),
                func.max(c.measured_at).label("last"))
         .group_by(c.dataset, c.check, c.column, c.metric)
         .order_by(c.dataset, c.check, c.column, c.metric))
    rows = _select(settings, q)
    for row in rows:
        row["last"] = utc(row["last"]) if isinstance(row["last"], datetime) else row["last"]
    return rows


def _select(settings: Settings, q: Any) -> list[dict[str, Any]]:
    """The rows of `q` on the state database; none when it has no quality tables yet."""
    with state_db(settings) as engine:
        try:
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(q)]
        except DB_ERRORS:
            return []


def history(settings: Settings, dataset: str, check: str, column: str, metric: str,
            since: datetime | None = None, limit: int = 5000) -> list[dict[str, Any]]:
    """The values of one metric over time, oldest first (the newest `limit`): `measured_at`,
    `run_id`, `partition`, `hour` (the start of a `date=/hour=` partition, else None),
    `value`, `threshold`, `status`, `detail`."""
    _limit(limit)
    c = quality_results.c
    cond = and_(c.dataset == dataset, c.check == check, c.column == column, c.metric == metric)
    if since is not None:
        cond = and_(cond, c.measured_at >= utc(since))
    q = (select(c.measured_at, c.run_id, c.partition, c.value, c.threshold, c.status,
                c.detail).where(cond).order_by(desc(c.measured_at), desc(c.id)).limit(limit))
    rows = _select(settings, q)
    for row in rows:
        row["hour"] = _hour(str(row["partition"]))
    rows.reverse()
    return rows


def _hour(partition: str) -> datetime | None:
    """The start of a `date=YYYY-MM-DD/hour=HH` partition (UTC), else None."""
    parts = dict(p.split("=", 1) for p in partition.split("/") if "=" in p)
    if set(parts) != {"date", "hour"}:
        return None
    try:
        return utc(datetime.fromisoformat(f"{parts['date']}T{parts['hour']}:00:00"))
    except ValueError:
        return None


def gate(settings: Settings, limit: int = 500) -> list[dict[str, Any]]:
    """Every partition's verdict (`dataset`, `partition`, `status` open | held | accepted,
    `run_id`, `reason`, `updated_at`, `accepted_by`, `accepted_reason`, `accepted_at`),
    held first, then the most recently judged."""
    _limit(limit)
    with _store(settings) as store:
        try:
            return store.gate_rows(limit)
        except DB_ERRORS:
            return []


def held(settings: Settings) -> list[dict[str, Any]]:
    """The partitions the gate holds now (gate rows), oldest partition first."""
    with _store(settings) as store:
        try:
            return store.held()
        except DB_ERRORS:
            return []


def decisions(settings: Settings, limit: int = 200) -> list[dict[str, Any]]:
    """The gate's audit trail, newest first: `dataset`, `partition`, `decision` (held |
    released | accepted), `run_id`, `by` (`quality` for the checks, else who accepted),
    `reason`, `at`."""
    _limit(limit)
    with _store(settings) as store:
        try:
            return store.decisions(limit)
        except DB_ERRORS:
            return []


def counters(settings: Settings) -> dict[str, Any]:
    """Totals for `/metrics`: `results` ({check: {status: n}}), `gate` ({held, accepted,
    open: partitions}) and `last_run_score` (the newest run-level score, None before any)."""
    with _store(settings) as store:
        try:
            raw = store.counters()
        except DB_ERRORS:
            raw = {"results": {}, "gate": {}, "last_run_score": None}
    by_check: dict[str, dict[str, int]] = {}
    for (check, status), n in sorted(raw["results"].items()):
        by_check.setdefault(check, {})[status] = n
    return {"results": by_check,
            "gate": {s: int(raw["gate"].get(s, 0)) for s in GATE_STATUSES},
            "last_run_score": raw["last_run_score"]}


def accept(settings: Settings, partition: str, reason: str, by: str | None = None,
           dataset: str | None = None) -> list[dict[str, Any]]:
    """Let a held partition through (of every dataset holding it, or only `dataset`'s),
    recorded with who (`by`, default the login name) and why. Returns the gate rows now
    accepted. A QueryError when `reason` is empty, or when nothing matching is held."""
    if partition != RUN:
        check_partition(partition)
    why = reason.strip() if isinstance(reason, str) else ""
    if not why:
        raise QueryError("a reason is required to accept a held partition (--reason TEXT)")
    if len(why) > MAX_REASON:
        raise QueryError(f"the reason is {len(why)} characters; at most {MAX_REASON}")
    who = by.strip() if isinstance(by, str) and by.strip() else None
    with _store(settings) as store:
        try:
            done = store.accept(partition, why, by=who, dataset=dataset)
        except NotHeld:
            where = f" of {dataset}" if dataset else ""
            now = sorted({f"{r['dataset']}/{r['partition']}" for r in store.held()})
            raise QueryError(
                f"nothing held: partition {partition}{where} is not held by the quality gate"
                + (f" (held now: {', '.join(now[:5])}{', ...' if len(now) > 5 else ''})"
                   if now else " (nothing is held now)")) from None
        g = quality_gate.c
        q = select(quality_gate).where(or_(*(and_(g.dataset == d, g.partition == p)
                                             for d, p in done))).order_by(g.dataset)
        with store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
