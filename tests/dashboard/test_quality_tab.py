"""The Quality tab in AppTest over the pipeline's small lake, whose ETL pass checked every
run, plus one run recorded as the auditor records it with an hour the gate holds: the scores
and parts the query functions return, the failed check first, the held partition with its
accept form (accepting it stores who and why and shows the day again on the other tabs), a
metric's history chart, and the empty state before any run was checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mad.config import load_settings
from mad.dashboard.tabs.quality import NOT_CHECKED
from mad.dashboard.ui import number
from mad.state import open_state
from tests.dashboard.conftest import metric, page
from tests.dashboard.test_tabs import texts
from tests.query.conftest import BuiltLake
from tests.query.quality_rows import DATASET, record_run, run_results

pytestmark = pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")


def hold_one(built: BuiltLake) -> str:
    """Record a checked run over the lake's hours of DATASET whose fullest hour fails a
    gating check; that partition."""
    from mad.query.datasets import partitions

    parts = partitions(built.settings, DATASET)
    failing = max(parts, key=lambda p: p["rows"] or 0)["partition"]
    record_run(built.settings, "events-test-1",
               run_results([p["partition"] for p in parts], failing=failing))
    return str(failing)


def test_quality_shows_scores_checks_history_and_the_held_partition(own_lake: BuiltLake
                                                                    ) -> None:
    from mad.query.quality import FORMULA, latest_scores

    settings = own_lake.settings
    held = hold_one(own_lake)
    at = page(settings, "quality")
    for s in latest_scores(settings):
        assert metric(at, s["dataset"]) == number(s["score"])
    parts = at.dataframe[0].value
    latest = latest_scores(settings)
    assert list(parts["dataset"]) == [s["dataset"] for s in latest]
    logs = next(s for s in latest if s["dataset"] == DATASET)
    row = parts[parts["dataset"] == DATASET].iloc[0]
    assert row["completeness"] == number(logs["parts"]["completeness"])
    assert list(parts.columns[2:5]) == ["completeness", "uniqueness", "validity"]
    assert any(FORMULA in t for t in texts(at))
    assert metric(at, "Held partitions") == "1"
    assert any(f"{DATASET}/{held}" in t for t in texts(at))
    assert any(t.startswith("1 partition held by the quality gate") for t in texts(at))
    checks = next(df.value for df in at.dataframe if "check" in df.value.columns)
    assert checks["status"].iloc[0] == "fail" and checks["partition"].iloc[0] == held
    assert set(checks["status"]) <= {"fail", "warn"}
    assert at.selectbox(key="q_check").value == "volume"
    assert len(at.get("vega_lite_chart")) == 1
    decisions = at.dataframe[-1].value
    assert decisions["decision"].iloc[0] == "held"


def test_accepting_a_held_partition_stores_who_and_why(own_lake: BuiltLake) -> None:
    from mad.query.quality import decisions, held
    from mad.query.services import service_metrics

    settings = own_lake.settings
    partition = hold_one(own_lake)
    at = page(settings, "quality")
    accept = next(b for b in at.button if b.label == "Accept")
    accept.click().run()  # no reason: refused, nothing changes
    assert not at.exception
    assert any("a reason is required" in str(e.value) for e in at.error)
    assert [h["partition"] for h in held(settings)] == [partition]
    at.text_input(key="q_reason_0").input("late service field, checked by hand")
    at.text_input(key="q_by_0").input("alice")
    next(b for b in at.button if b.label == "Accept").click().run()
    assert not at.exception
    assert next(s.value for s in at.success) == (
        f"Accepted {DATASET}/{partition} by alice: late service field, checked by hand")
    assert held(settings) == []
    last = decisions(settings)[0]
    assert (last["decision"], last["by"], last["reason"]) == (
        "accepted", "alice", "late service field, checked by hand")
    assert metric(at, "Held partitions") == "0" and metric(at, "Accepted") == "1"
    assert not [b for b in at.button if b.label == "Accept"]
    from mad.dashboard.ui import time_range
    from tests.dashboard.conftest import RANGE

    period = time_range(RANGE)
    assert service_metrics(settings, "1m", period.start, period.end).held == []


def test_the_other_tabs_say_what_the_gate_holds_back(own_lake: BuiltLake) -> None:
    hold_one(own_lake)
    for tab in ("services", "overview"):
        at = page(own_lake.settings, tab)
        notes = [str(w.value) for w in at.warning if "held by the quality gate" in str(w.value)]
        assert notes and notes[0].startswith("1 partition held by the quality gate"), tab
    from mad.query.quality import latest_scores

    overview = page(own_lake.settings, "overview")
    assert metric(overview, "Held partitions") == "1"
    lowest = min(s["score"] for s in latest_scores(own_lake.settings))
    assert lowest < 100 and metric(overview, "Lowest quality score") == number(lowest)


def test_before_any_checked_run_it_says_what_to_do(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path)})
    open_state(settings.state_url).dispose()  # a state database, no quality results
    at: AppTest = page(settings, "quality")
    assert [i.value for i in at.info] == [NOT_CHECKED]
    assert "mad etl run" in NOT_CHECKED
