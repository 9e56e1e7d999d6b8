"""Write-audit-publish for the ETL: measure a run's stage, judge it, record it, gate it.

`EtlRunner` calls `audit_run` after a run has staged its output and before it publishes:
the measuring plans (`mad.quality.plans`) run on the configured engine over exactly the rows
the lake is about to hold, `mad.quality.checks` judges them against thresholds and history,
`mad.quality.score` scores them, and `QualityStore.record` stores the results with the gate's
verdict in one transaction. A partition whose gating checks fail is then published but held:
detection and the dashboard's reads leave it out until an operator accepts it or a later run
passes. Each pass also reconciles the lake with the ledgers (`mad.quality.reconcile`).

The audit never fails a run: a failure to measure (the engine could not read the stage, the
state database refused the write) is logged and recorded as a failed `audit` result of the
run, and the run publishes as it would have without the checks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as Database

from mad.config import Settings
from mad.etl.engines import Engine
from mad.quality import plans, reconcile
from mad.quality.checks import History, Judge, RunFacts, partition_hour, partition_key
from mad.quality.model import RUN, Result
from mad.quality.score import scores
from mad.state import QualityStore

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
LOGGED = 10  # reconciliation failures logged one by one; the rest are counted
ENVELOPE_COLUMNS = ("event_id", "event_time", "service", "event_type", "kind")


@dataclass
class StagedRun:
    """What the runner hands the audit: one events run, staged, not yet published."""

    run_id: str
    kind: str
    dataset: str
    counts: dict[str, int]  # every count the engine returned (count_in, count_new, ...)
    raw_files: Sequence[tuple[str, int, float]]  # (location, bytes, ingest hour epoch s)
    events_dir: Path  # the stage's events output (Hive partitions date=/hour=)
    quarantine_dir: Path  # the stage's quarantine output
    replaced_bytes: int = 0  # Parquet bytes of the lake partitions the stage replaces


@dataclass
class StreamFacts:
    """The stream side of reconciliation: what the ingest API acknowledged, the raw files
    with their records per shard, and how far the raw writer has landed each shard."""

    acked: Mapping[tuple[str, int], tuple[int, int]]
    files: Sequence[tuple[str, int, Mapping[str, int]]]
    landed_through: Mapping[str, int]


@dataclass
class Audit:
    run_id: str
    results: list[Result] = field(default_factory=list)
    held: list[tuple[str, str]] = field(default_factory=list)  # gate changes to `held`
    seconds: float = 0.0

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.failed]

    def line(self) -> str:
        bad = self.failed
        warned = sum(r.status == "warn" for r in self.results)
        text = f"quality: {len(bad)} failed, {warned} warned"
        if self.held:
            text += "; held " + ", ".join(f"{d}/{p}" for d, p in self.held)
        return text


class Auditor:
    def __init__(self, settings: Settings, engine: Engine, state: Database) -> None:
        self.settings = settings
        self.engine = engine
        self.store = QualityStore(state)
        self._pruned_at = -PRUNE_INTERVAL_S

    def audit_run(self, run: StagedRun) -> Audit:
        """Measure, judge, score and record `run` (see the module docstring)."""
        started = time.perf_counter()
        audit = Audit(run.run_id)
        try:
            audit.results = self._judge(run)
            audit.held = self._record(run.run_id, audit.results)
        except Exception as err:  # never fail the run; say so and keep the failure
            log.error("quality checks of run %s failed: %s", run.run_id, err)
            log.debug("quality checks of run %s failed", run.run_id, exc_info=True)
            audit.results = [Result(run.dataset, RUN, "audit", "*", "measured", 0.0,
                                    status="fail", severity="warn",
                                    detail=f"the checks could not run: {err}"[:500])]
            try:
                self.store.record(run.run_id, audit.results, [], {})
            except Exception as again:
                log.error("could not record the failed checks of run %s: %s", run.run_id,
                          again)
        audit.seconds = time.perf_counter() - started
        if audit.failed or audit.held:
            log.warning("run %s %s", run.run_id, audit.line())
        return audit

    def reconcile(self, recorded: Sequence[Mapping[str, Any]],
                  listing: Callable[[str], dict[str, int]],
                  count_rows: Callable[[list[str]], int],
                  raw_recorded: Mapping[str, Mapping[str, int]],
                  raw_listing: Callable[[str], dict[str, int]],
                  stream: StreamFacts | None = None) -> Audit:
        """Reconcile the lake with the ledgers (`mad.quality.reconcile`) and record it as one
        audit of its own; like `audit_run`, it never raises."""
        cfg = self.settings.quality.reconciliation
        audit = Audit(f"reconcile-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
        if not cfg.enabled:
            return audit
        started = time.perf_counter()
        listed: dict[str, dict[str, int]] = {}

        def raw_listing_once(prefix: str) -> dict[str, int]:
            if prefix not in listed:
                listed[prefix] = raw_listing(prefix)
            return listed[prefix]

        try:
            audit.results = (reconcile.lake_results(recorded, listing, count_rows, cfg)
                             + reconcile.raw_results(raw_recorded, raw_listing_once, cfg))
            compared = {str(r["dataset"]) for r in recorded} | set(raw_recorded)
            audit.results += reconcile.released(self.store.held(), audit.results, compared)
            if stream is not None:
                present = {k for ds in raw_recorded for k in raw_listing_once(ds + "/")}
                audit.results += reconcile.ingest_results(
                    stream.acked, stream.files, present.__contains__, stream.landed_through,
                    cfg)
            audit.held = self._record(audit.run_id, audit.results)
        except Exception as err:
            log.error("reconciling the lake failed: %s", err)
            log.debug("reconciling the lake failed", exc_info=True)
        self._prune()
        audit.seconds = time.perf_counter() - started
        lost = [r for r in audit.failed if r.partition != RUN]
        for r in lost[:LOGGED]:
            log.error("reconciliation: %s/%s: %s", r.dataset, r.partition, r.detail)
        if len(lost) > LOGGED:
            log.error("reconciliation: %d more partitions short (`mad quality report`)",
                      len(lost) - LOGGED)
        return audit

    # -- steps -----------------------------------------------------------------------------

    def _judge(self, run: StagedRun) -> list[Result]:
        q = self.settings.quality
        files = sorted(str(p) for p in run.events_dir.rglob("*.parquet"))
        now = datetime.now(UTC)
        measures: list[dict[str, Any]] = []
        if files:
            required = [*ENVELOPE_COLUMNS, *q.completeness.columns.get(run.kind, [])]
            plan = plans.partition_plan(run.kind, required, [f[0] for f in run.raw_files],
                                        now.replace(tzinfo=None), q.validity.future_skew_s)
            measures = self.engine.query(plan, [], {"events": files}, "measures")
        quarantined = sorted(str(p) for p in run.quarantine_dir.rglob("*.parquet"))
        rows = self.engine.query(plans.quarantine_plan(), [], {"quarantine": quarantined},
                                 "measures") if quarantined else []
        staged_bytes = sum(Path(f).stat().st_size for f in files)
        newest_hour = max((h for _, _, h in run.raw_files), default=None)
        facts = RunFacts(
            run.run_id, run.dataset, run.counts, measures, rows,
            raw_bytes=sum(b for _, b, _ in run.raw_files),
            parquet_bytes=max(staged_bytes - run.replaced_bytes, 0),
            newest_ingest=None if newest_hour is None else datetime.fromtimestamp(
                newest_hour, UTC),
            newest_event=self._newest_known(run.dataset), now=now)
        return Judge(q, self._history(run.dataset, measures)).judge(facts)

    def _prune(self) -> None:
        """Bound the quality history (`QualityStore.prune`), at most once an hour."""
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_INTERVAL_S:
            return
        self._pruned_at = now
        q = self.settings.quality
        try:
            gone = self.store.prune(q.keep_days, q.superseded_hours)
        except Exception as err:  # tried again in an hour; the checks go on
            log.warning("could not prune the quality history: %s", err)
            return
        if gone:
            log.info("quality history: %d old or superseded rows deleted", gone)

    def _history(self, dataset: str, measures: Sequence[Mapping[str, Any]]) -> History:
        """The history the checks of these partitions can read (the seasonal baselines'
        weeks, the drift detector's points), loaded in one query."""
        hours = [h for m in measures if m["date"] != "*"
                 if (h := partition_hour(f"date={m['date']}/hour={m['hour']}")) is not None]
        if not hours:
            return lambda *_: {}
        q = self.settings.quality
        back = max(timedelta(weeks=q.volume.weeks), timedelta(days=q.volume.days),
                   timedelta(hours=q.volume.recent_hours),
                   timedelta(hours=q.history.points) + timedelta(days=7))
        loaded = self.store.window(dataset, partition_key(min(hours) - back),
                                   partition_key(max(hours)))

        def history(ds: str, check: str, column: str, metric: str,
                    partitions: Iterable[str]) -> dict[str, float]:
            values = loaded.get((check, column, metric), {})
            return {p: values[p] for p in partitions if p in values}

        return history

    def _newest_known(self, dataset: str) -> float | None:
        """The end of the newest hour measured so far: a late-only run does not make the
        hours it touches look as if they were still filling."""
        newest = self.store.latest(dataset, "volume", "*", "rows", limit=1)
        hours = [h for p in newest if (h := partition_hour(p)) is not None]
        return max(hours).timestamp() + 3600 if hours else None

    def _record(self, run_id: str, results: Sequence[Result]) -> list[tuple[str, str]]:
        """Store `results` and re-judge the gate of every partition they measured (a failed
        gating check of the run as a whole holds every partition of its dataset)."""
        judged: dict[tuple[str, str], list[Result]] = {}
        run_gates = [r for r in results if r.partition == RUN and r.failed and r.gate]
        for r in results:
            if r.partition != RUN:
                judged.setdefault((r.dataset, r.partition), [])
        for (ds, part), failures in judged.items():
            failures += [r for r in results
                         if r.dataset == ds and r.partition == part and r.failed and r.gate]
            failures += [r for r in run_gates if r.dataset == ds]
        changes = self.store.record(run_id, results, scores(results), judged)
        return [(ds, part) for ds, part, change in changes if change == "held"]
