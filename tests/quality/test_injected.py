"""Faults injected into one partition of an otherwise steady series are flagged by the right
check; an error-severity failure keeps the day away from detection until an operator
accepts it, and the acceptance is recorded with who and why."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.quality.conftest import START, cpu_events, etl_pass, partition, settings_for, write_raw

from mad.detect.pipeline import DetectRunner, QualityGate
from mad.state import NotHeld, QualityStore, open_state

DROP = START + timedelta(days=4, hours=8)  # 90% of the events missing
NULLS = START + timedelta(days=4, hours=12)  # 30% without a host
RETYPED = START + timedelta(days=4, hours=16)  # some lines give `metrics` as a string
DAY = f"{DROP:%Y-%m-%d}"


def shape(i: int, at: Any) -> dict[str, Any] | None:
    if at == DROP and i % 10:
        return None
    if at == NULLS and i % 10 < 3:
        return {"host": None}
    return {}


@pytest.fixture
def injected(tmp_path: Path, state_url: str) -> tuple[Any, QualityStore]:
    hours = cpu_events(24 * 6, np.random.default_rng(3), shape=shape)
    bad = [f'{{"event_id":"bad-{n}","timestamp":"{RETYPED.isoformat()}","service":"payments",'
           f'"event_type":"host.cpu","kind":"metric","metrics":"12"}}' for n in range(5)]
    write_raw(tmp_path, hours, raw_lines={RETYPED: bad})
    settings = settings_for(tmp_path, state_url)
    etl_pass(settings)
    return settings, QualityStore(open_state(settings.state_url))


def by_partition(store: QualityStore, at: Any) -> list[dict[str, Any]]:
    return store.results(partition=partition(at))


def test_each_fault_is_flagged_by_its_check(injected: tuple[Any, QualityStore]) -> None:
    _, store = injected
    drop = [r for r in by_partition(store, DROP) if r["status"] == "fail"]
    assert [(r["check"], r["metric"]) for r in drop] == [("volume", "rows")]
    assert "expected" in drop[0]["detail"] and "deviation -90%" in drop[0]["detail"]
    nulls = [r for r in by_partition(store, NULLS) if r["status"] == "fail"]
    assert [(r["check"], r["column"], r["metric"]) for r in nulls] == [
        ("completeness", "host", "null_rate")]
    assert nulls[0]["value"] == pytest.approx(0.3)
    retyped = [r for r in store.results() if r["metric"] == "retyped"]
    assert [(r["column"], r["value"], r["status"]) for r in retyped] == [("metrics", 5.0, "warn")]
    assert '"metrics":"12"' in retyped[0]["detail"]
    # the other partitions of the day pass their volume and completeness checks
    fine = by_partition(store, DROP + timedelta(hours=1))
    assert {r["status"] for r in fine if r["check"] in ("volume", "completeness")} == {"pass"}
    assert not [r for r in store.results() if r["check"] == "history" and r["status"] != "pass"
                and r["partition"] not in (partition(DROP), partition(NULLS))]


def test_a_held_day_waits_for_an_operator(injected: tuple[Any, QualityStore]) -> None:
    settings, store = injected
    held = {(r["dataset"], r["partition"]) for r in store.held()}
    assert held == {("md-transformed-metrics", partition(DROP)),
                    ("md-transformed-metrics", partition(NULLS))}
    gate = QualityGate(store)
    assert not gate.passed("1h", DAY) and gate.passed("1h", f"{DROP - timedelta(days=1):%Y-%m-%d}")

    runner = DetectRunner(settings)
    try:
        summary = runner.run_once()
    finally:
        runner.close()
    assert f"date={DAY} is held by the quality gate" in summary.held
    assert summary.windows > 0  # the days before it were scored

    with pytest.raises(NotHeld):
        store.accept(partition(DROP + timedelta(hours=1)), "not held")
    store.accept(partition(DROP), "the payments batch job was paused that hour", by="ops-anna")
    assert not gate.passed("1h", DAY)  # one partition of the day is still held
    store.accept(partition(NULLS), "host tags were fixed upstream", by="ops-anna")
    assert gate.passed("1h", DAY)
    accepted = [d for d in store.decisions() if d["decision"] == "accepted"]
    assert {(d["partition"], d["by"], d["reason"]) for d in accepted} == {
        (partition(DROP), "ops-anna", "the payments batch job was paused that hour"),
        (partition(NULLS), "ops-anna", "host tags were fixed upstream")}

    runner = DetectRunner(settings)
    try:
        after = runner.run_once()
    finally:
        runner.close()
    assert "quality gate" not in (after.held or "") and after.windows > 0


def test_an_unknown_required_column_is_said_and_never_fails_the_run(tmp_path: Path) -> None:
    write_raw(tmp_path, cpu_events(2, np.random.default_rng(3)))
    settings = settings_for(tmp_path, **{"quality.completeness.columns": {
        "metric": ["host", "hostname; DROP TABLE quality_results"]}})
    summary, _ = etl_pass(settings)
    assert summary.rows_out == 2 * 40  # published as it would have been without the checks
    audit = [r for r in QualityStore(open_state(settings.state_url)).results()
             if r["check"] == "audit"]
    assert [r["status"] for r in audit] == ["fail"]
    assert "unknown column 'hostname; DROP TABLE quality_results'" in audit[0]["detail"]
