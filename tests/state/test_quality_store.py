"""Quality results, scores and the write-audit-publish gate in the state database, on SQLite
and PostgreSQL: a gating failure holds a partition, an operator's acceptance is recorded with
who and why, a passing re-run releases it, and all of it survives a restart."""

from __future__ import annotations

import pytest

from mad.quality.model import RUN, Result
from mad.state import QualityStore, open_state
from mad.state.quality import NotHeld, Score

PART = "date=2026-11-01/hour=03"
DS = "md-transformed-logs"


def nulls(rate: float, status: str) -> Result:
    return Result(DS, PART, "completeness", "level", "null_rate", rate, 0.05,
                  status, "error", gate=True)  # type: ignore[arg-type]


def test_a_gating_failure_holds_until_accepted_then_a_pass_releases(state_url: str) -> None:
    store = QualityStore(open_state(state_url))
    bad = nulls(0.3, "fail")
    changes = store.record("run-1", [bad], [Score(DS, PART, 50.0, {"completeness": 0.0}, 1, 0)],
                           {(DS, PART): [bad]})
    assert changes == [(DS, PART, "held")]
    assert store.held_days([DS]) == {"2026-11-01"}
    assert store.held_days(["md-transformed-apm"]) == set()

    with pytest.raises(NotHeld):
        store.accept("date=2026-11-01/hour=04", "not held", by="ops")
    assert store.accept(PART, "known outage upstream", by="ops") == [(DS, PART)]
    assert store.held() == []

    # restart: a new engine on the same database sees the acceptance and the history
    store = QualityStore(open_state(state_url))
    (gate,) = store.gate_rows()
    assert (gate["status"], gate["accepted_by"], gate["accepted_reason"]) == (
        "accepted", "ops", "known outage upstream")
    # the same failures again stay accepted; a different one holds it again
    assert store.record("run-2", [bad], [], {(DS, PART): [bad]}) == []
    worse = nulls(0.6, "fail")
    assert store.record("run-3", [worse], [], {(DS, PART): [worse]}) == [(DS, PART, "held")]
    good = nulls(0.0, "pass")
    assert store.record("run-4", [good], [], {(DS, PART): []}) == [(DS, PART, "released")]
    assert [d["decision"] for d in store.decisions()] == ["released", "held", "accepted",
                                                            "held"]
    assert store.latest(DS, "completeness", "level", "null_rate") == {PART: 0.0}
    assert {r["run_id"] for r in store.results(partition=PART)} == {
        "run-1", "run-2", "run-3", "run-4"}
    (score,) = store.scores()
    assert score["parts"] == {"completeness": 0.0} and score["score"] == 50.0


def test_counters_and_run_scores(state_url: str) -> None:
    store = QualityStore(open_state(state_url))
    ok = Result(DS, RUN, "reconciliation", "*", "unaccounted", 0.0, 0.0, "pass", "error")
    store.record("run-1", [ok, nulls(0.01, "pass")], [Score(DS, RUN, 100.0, {}, 0, 0)], {})
    counters = store.counters()
    assert counters["results"] == {("reconciliation", "pass"): 1, ("completeness", "pass"): 1}
    assert counters["gate"] == {} and counters["last_run_score"] == 100.0


def test_the_history_is_bounded_and_keeps_the_last_word_on_each_partition(
        state_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    store = QualityStore(open_state(state_url))
    other = "date=2026-11-01/hour=04"
    for run in ("run-1", "run-2", "run-3"):  # three live passes measured the same hour
        store.record(run, [nulls(0.01, "pass"),
                           Result(DS, RUN, "reconciliation", "*", "unaccounted_lines", 0.0)],
                     [Score(DS, RUN, 100.0, {"reconciliation": 100.0}, 0, 0)], {})
    store.record("run-4", [Result(DS, other, "volume", "*", "rows", 10.0)], [], {})
    assert len(store.results()) == 7

    now = datetime.now(UTC)
    assert store.prune(keep_days=35, superseded_hours=24, now=now) == 0  # all recent
    # a day later: the superseded measurements of PART go, the newest of each stays
    gone = store.prune(keep_days=35, superseded_hours=24, now=now + timedelta(days=1, hours=1))
    assert gone == 2
    kept = store.results()
    assert sorted((r["run_id"], r["partition"]) for r in kept if r["partition"] != RUN) == [
        ("run-3", PART), ("run-4", other)]
    assert len([r for r in kept if r["partition"] == RUN]) == 3  # run-level rows are kept
    assert store.latest(DS, "completeness", "level", "null_rate") == {PART: 0.01}
    # past `keep_days`: everything but the gate goes
    store.prune(keep_days=35, superseded_hours=24, now=now + timedelta(days=36))
    assert store.results() == [] and store.scores() == []
