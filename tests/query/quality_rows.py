"""A checked ETL run as the quality checks record it, for the tests of the read side: result
rows such as `mad.quality.checks` writes (completeness, uniqueness, validity, volume,
schema and reconciliation of each event hour and of the run), scored by `mad.quality.score`
and stored with `QualityStore.record`, one hour failing a gating check (so the gate holds
it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from mad.config import Settings
from mad.quality.model import RUN, Result
from mad.quality.score import scores
from mad.state import QualityStore, open_state

DATASET = "md-transformed-logs"


def hours_of(start: datetime, n: int) -> list[str]:
    """`date=/hour=` partitions of `n` event hours from `start`."""
    return [f"date={(start + timedelta(hours=h)):%Y-%m-%d}/hour={(start + timedelta(hours=h)):%H}"
            for h in range(n)]


def run_results(partitions: Sequence[str], failing: str | None = None,
                rows: float = 36_000.0, dataset: str = DATASET) -> list[Result]:
    """The results of one run over `partitions`; `failing` has 20% of its `service` null (a
    gating completeness failure) and the last partition a volume warning."""
    out: list[Result] = []
    for part in partitions:
        null_rate = 0.2 if part == failing else 0.0
        out += [
            Result(dataset, part, "completeness", "service", "null_rate", null_rate, 0.05,
                   "fail" if part == failing else "pass", "error", True,
                   f"{null_rate:.2%} (at most 5.00%)"),
            Result(dataset, part, "completeness", "event_id", "null_rate", 0.0, 0.05, "pass",
                   "error", True, "0.00% (at most 5.00%)"),
            Result(dataset, part, "uniqueness", "event_id", "duplicates_in_lake", 0.0, 0.0,
                   "pass", "error", True, "0 (at most 0)"),
            Result(dataset, part, "validity", "event_time", "future_rate", 0.0, 0.01, "pass",
                   "error", True, "0.00% (at most 1.00%)"),
            Result(dataset, part, "volume", "*", "rows",
                   rows * (0.4 if part == partitions[-1] else 1.0), None,
                   "warn" if part == partitions[-1] else "pass", "warn", False,
                   f"expected {rows * 0.8:g}..{rows * 1.2:g} rows from the same hours before"),
            Result(dataset, part, "distribution", "duration_ms", "p95", 180.0, None, "skip",
                   "warn", False, "too little history"),
        ]
    out += [
        Result(dataset, RUN, "reconciliation", "*", "unaccounted_lines", 0.0, 0.0, "pass",
               "error", True, "lines in = new + duplicates + quarantined"),
        Result(dataset, RUN, "schema", "k8s", "new_field", 12.0, 0.0, "warn", "warn", False,
               "new field 'k8s' in 12 rows"),
        Result(dataset, RUN, "compression", "*", "raw_to_parquet", 6.5, None, "info", "warn",
               False, "raw bytes / Parquet bytes"),
    ]
    return out


def record_run(settings: Settings, run_id: str, results: Sequence[Result]) -> list[
        tuple[str, str, str]]:
    """Store a run as the auditor does: results, scores, and the gate of every partition it
    measured (held when a gating check failed); the gate's changes."""
    judged: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.partition != RUN:
            judged.setdefault((r.dataset, r.partition), [])
            if r.failed and r.gate:
                judged[(r.dataset, r.partition)].append(r)
    engine = open_state(settings.state_url)
    try:
        return QualityStore(engine).record(run_id, list(results), scores(results), judged)
    finally:
        engine.dispose()
