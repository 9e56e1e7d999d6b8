"""`mad.query.quality` over a real SQLite state database: the pipeline's own checked runs plus
one run recorded as the auditor records it, with an hour the gate holds. The report's order
and filters, the latest scores with their parts, a metric's history, accept with who and why,
and the dashboard's reads leaving the held day out (and showing it again once accepted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mad.query import datasets, incidents, quality, services
from mad.query.access import QueryError
from mad.query.quality import STATUS_ORDER
from tests.query.conftest import BuiltLake, copy_lake
from tests.query.quality_rows import DATASET, hours_of, record_run, run_results

DAY = datetime(2026, 11, 1, tzinfo=UTC)
HELD = "date=2026-11-01/hour=01"
PARTS = hours_of(DAY, 3)  # hours 00, 01, 02 of the pipeline lake's day


@pytest.fixture
def checked(pipeline_lake: BuiltLake, tmp_path: Path) -> tuple[BuiltLake, datetime]:
    """A copy of the pipeline lake with one more checked run that holds HELD; the time just
    before it was recorded."""
    built = copy_lake(pipeline_lake, tmp_path / "lake")
    before = datetime.now(UTC)
    changes = record_run(built.settings, "events-test-1", run_results(PARTS, failing=HELD))
    assert changes == [(DATASET, HELD, "held")]
    return built, before


def test_the_report_lists_failed_then_warned_newest_run_first(
        checked: tuple[BuiltLake, datetime]) -> None:
    built, _ = checked
    got = quality.report(built.settings)
    statuses = [r["status"] for r in got["results"]]
    assert statuses[0] == "fail" and statuses.count("fail") == 1
    ranks = [STATUS_ORDER.index(s) for s in statuses]
    assert ranks == sorted(ranks)  # failed, warned, passed, skipped, info
    first = got["results"][0]
    assert (first["dataset"], first["partition"], first["check"], first["column"],
            first["value"], first["threshold"]) == (DATASET, HELD, "completeness", "service",
                                                    0.2, 0.05)
    for status in ("warn", "pass"):  # within a status, the newest run first
        times = [r["measured_at"] for r in got["results"] if r["status"] == status]
        assert times == sorted(times, reverse=True)
    warned = [r for r in got["results"] if r["status"] == "warn"]
    assert warned[0]["run_id"] == "events-test-1"
    assert got["counts"]["fail"] == 1 and sum(got["counts"].values()) == len(statuses)
    assert got["runs"][0]["run_id"] == "events-test-1"
    assert len(got["runs"]) > 1  # the pipeline's own runs are there too
    whole = got["runs"][0]["scores"][0]
    assert whole["partition"] == "*" and whole["dataset"] == DATASET
    assert whole["parts"]["completeness"] < 100 and whole["failed"] == 1
    assert [(h["dataset"], h["partition"]) for h in got["held"]] == [(DATASET, HELD)]
    assert "pass 1, warn 0.5, fail 0" in got["formula"]


def test_the_report_filters_by_time_and_partition(checked: tuple[BuiltLake, datetime]) -> None:
    built, before = checked
    mine = quality.report(built.settings, since=before)
    assert {r["run_id"] for r in mine["results"]} == {"events-test-1"}
    assert [r["run_id"] for r in mine["runs"]] == ["events-test-1"]
    one = quality.report(built.settings, partition=HELD)
    assert one["results"] and {r["partition"] for r in one["results"]} == {HELD}
    assert {r["dataset"] for r in one["results"]} > {DATASET}  # the pipeline's runs too
    later = quality.report(built.settings, since=datetime.now(UTC) + timedelta(hours=1))
    assert later["results"] == [] and later["runs"] == []
    assert later["held"]  # what is held now, whatever the period
    with pytest.raises(QueryError, match="bad partition"):
        quality.report(built.settings, partition="hour=01/../../etc")


def test_latest_scores_put_each_parts_newest_judgement_together(
        checked: tuple[BuiltLake, datetime]) -> None:
    built, _ = checked
    got = {s["dataset"]: s for s in quality.latest_scores(built.settings)}
    logs = got[DATASET]
    # completeness from our run (one of 6 hourly results failed), each part from the newest
    # run that judged it
    assert logs["runs"]["completeness"] == "events-test-1"
    assert logs["parts"]["completeness"] == pytest.approx(100 * 5 / 6, abs=0.01)
    assert logs["parts"]["volume"] == pytest.approx(100 * 2.5 / 3, abs=0.01)
    apm = got["md-transformed-apm"]  # the pipeline's: its ETL run and its reconciliation
    assert apm["runs"]["reconciliation"].startswith("reconcile-")
    assert apm["runs"]["completeness"].startswith("events-")
    assert logs["score"] == pytest.approx(sum(logs["parts"].values()) / len(logs["parts"]),
                                          abs=0.01)
    assert "distribution" not in logs["parts"] or logs["runs"]["distribution"] != \
        "events-test-1"  # skipped results take no part
    assert {"md-transformed-apm", "md-transformed-metrics"} <= set(got)


def test_history_gives_one_metrics_values_oldest_first(
        checked: tuple[BuiltLake, datetime]) -> None:
    built, _ = checked
    record_run(built.settings, "events-test-2", run_results(PARTS, rows=30_000.0))
    rows = quality.history(built.settings, DATASET, "volume", "*", "rows")
    ours = [r for r in rows if r["run_id"].startswith("events-test-")]
    assert [r["run_id"] for r in ours] == ["events-test-1"] * 3 + ["events-test-2"] * 3
    assert [r["value"] for r in ours[3:]] == [30_000.0, 30_000.0, 12_000.0]
    assert [r["hour"] for r in ours[:3]] == [DAY + timedelta(hours=h) for h in range(3)]
    times = [r["measured_at"] for r in rows]
    assert times == sorted(times)
    choices = quality.metrics(built.settings)
    assert {"dataset": DATASET, "check": "volume", "column": "*", "metric": "rows"}.items() \
        <= next(m for m in choices if (m["dataset"], m["check"], m["metric"])
                == (DATASET, "volume", "rows")).items()
    assert quality.history(built.settings, DATASET, "volume", "*", "no_such_metric") == []


def test_accept_records_who_and_why_and_refuses_what_is_not_held(
        checked: tuple[BuiltLake, datetime]) -> None:
    built, _ = checked
    s = built.settings
    with pytest.raises(QueryError, match="a reason is required"):
        quality.accept(s, HELD, "   ")
    assert quality.held(s)  # a refusal changes nothing
    done = quality.accept(s, HELD, "known gap: the service field was added late", by="alice")
    assert [(r["dataset"], r["partition"], r["status"], r["accepted_by"], r["accepted_reason"])
            for r in done] == [(DATASET, HELD, "accepted", "alice",
                                "known gap: the service field was added late")]
    assert quality.held(s) == []
    trail = quality.decisions(s)
    assert (trail[0]["decision"], trail[0]["by"], trail[0]["reason"], trail[0]["partition"]) \
        == ("accepted", "alice", "known gap: the service field was added late", HELD)
    assert trail[1]["decision"] == "held" and trail[1]["by"] == "quality"
    assert quality.gate(s)[0]["status"] != "held"
    with pytest.raises(QueryError) as refused:
        quality.accept(s, HELD, "again")
    assert str(refused.value).startswith(f"nothing held: partition {HELD} is not held")
    assert "\n" not in str(refused.value)
    counts = quality.counters(s)
    assert counts["gate"]["held"] == 0 and counts["gate"]["accepted"] == 1
    assert counts["results"]["completeness"]["fail"] == 1


def test_the_dashboards_reads_leave_the_held_day_out(pipeline_lake: BuiltLake,
                                                      tmp_path: Path) -> None:
    built = copy_lake(pipeline_lake, tmp_path / "lake")
    s = built.settings
    start, end = DAY - timedelta(hours=2), DAY + timedelta(hours=4)
    day = DAY.date().isoformat()
    before = services.service_metrics(s, "1m", start, end)
    assert any(r["window_start"].date() == DAY.date() for r in before) and before.held == []
    found_before = services.anomalies(s, start, end)
    aggregates_before = [p["partition"] for p in datasets.partitions(s, "md-aggregates")]
    assert f"window=1m/date={day}" in aggregates_before

    record_run(s, "events-test-1", run_results(PARTS, failing=HELD))
    held = [f"{DATASET}/{HELD}"]
    after = services.service_metrics(s, "1m", start, end)
    assert not any(r["window_start"].date() == DAY.date() for r in after)
    assert after == [r for r in before if r["window_start"].date() != DAY.date()]
    assert after.held == held
    anomalies = services.anomalies(s, start, end)
    assert anomalies == [a for a in found_before if a["window_start"].date() != DAY.date()]
    assert anomalies.held == held
    logs = datasets.partitions(s, DATASET)
    assert HELD not in [p["partition"] for p in logs] and logs.held == held
    aggregates = datasets.partitions(s, "md-aggregates")
    assert [p for p in aggregates_before if day not in p] == [
        p["partition"] for p in aggregates]
    assert datasets.files(s, DATASET, HELD) == [] and datasets.files(s, DATASET, HELD).held \
        == held
    listed = {d["name"]: d for d in datasets.datasets(s)}
    assert listed[DATASET]["held"] == 1 and listed["md-raw-logs"]["held"] == 0
    assert listed[DATASET]["partitions"] == len(logs)
    inc = incidents.incidents(s)
    if inc:
        detail = incidents.incident_detail(s, inc[0]["id"])
        assert detail["held"] == held or inc[0]["started"].date() != DAY.date()
        assert all(a["window_start"].date() != DAY.date() for a in detail["anomalies"])

    # quality off: detection reads every day, and so does the dashboard
    off = s.model_copy(update={"quality": s.quality.model_copy(update={"enabled": False})})
    assert services.service_metrics(off, "1m", start, end) == before

    quality.accept(s, HELD, "checked by hand", by="bob")
    again = services.service_metrics(s, "1m", start, end)
    assert again == before and again.held == []
    assert HELD in [p["partition"] for p in datasets.partitions(s, DATASET)]
