"""The checks on generator output, through the real ETL runner: they report the faults the
labels say were injected, and a clean stretch passes every check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.quality.conftest import etl_pass, settings_for

from mad.etl.runner import PassSummary
from mad.state import QualityStore, open_state


def results(settings: Any) -> list[dict[str, Any]]:
    return QualityStore(open_state(settings.state_url)).results()


def total(rows: list[dict[str, Any]], check: str, metric: str, column: str | None = None,
          ) -> float:
    return sum(r["value"] for r in rows if r["check"] == check and r["metric"] == metric
               and (column is None or r["column"] == column))


def one_pass(root: Path, events: Path,
             split: Callable[[Path, Path], list[Path]]) -> tuple[PassSummary, Any]:
    """The generated events as a raw lake under `root`, and one ETL pass over it."""
    split(events, root / "lake")
    settings = settings_for(root)
    summary, _ = etl_pass(settings)
    return summary, settings


def test_the_checks_report_what_the_generator_injected(
        tmp_path: Path, faulty: tuple[Path, dict[str, Any]],
        split: Callable[[Path, Path], list[Path]]) -> None:
    events, labels = faulty
    summary, settings = one_pass(tmp_path, events, split)
    rows = results(settings)
    faults = labels["faults"]

    assert summary.rows_in == labels["lines"]
    # every line is accounted for, in every run
    recon = [r for r in rows if r["metric"] == "unaccounted_lines"]
    assert len(recon) == 3 and all(r["value"] == 0 and r["status"] == "pass" for r in recon)
    assert total(rows, "uniqueness", "duplicate_rate") > 0
    assert summary.duplicates == faults["duplicates"]
    # malformed lines, per reason, exactly (`truncated_json` is quarantined as invalid JSON)
    reasons: Counter[str] = Counter()
    for r in rows:
        if r["metric"] == "quarantined_lines":
            reasons[r["column"]] += int(r["value"])
    want = dict(faults["malformed"])
    want["invalid_json"] = want.pop("truncated_json")
    assert dict(reasons) == want
    retyped = total(rows, "schema", "retyped")
    assert retyped > 0 and retyped <= faults["malformed"]["wrong_type"]
    # late arrivals: one per raw file may be missed (a late line that opens a file)
    late = total(rows, "validity", "late_arrivals")
    assert faults["late"] - summary.files <= late <= faults["late"]
    # skewed clocks: an upper bound (the partner hosts of a two-host service look skewed too)
    skewed = total(rows, "validity", "skewed_clock_lines")
    assert faults["clock_skew_events"] <= skewed <= 2 * faults["clock_skew_events"]
    # unknown fields: every event carrying one, but those also malformed (quarantined)
    unknown = total(rows, "schema", "new_field")
    assert faults["unknown_fields"] - faults["malformed_total"] <= unknown
    assert unknown <= faults["unknown_fields"]
    new = [r for r in rows if r["metric"] == "new_field"]
    assert new and all(r["status"] == "warn" and "e.g. {" in r["detail"] for r in new)
    # a lake that is a month old: freshness measured, not judged
    assert {r["status"] for r in rows if r["check"] == "freshness"} == {"skip"}
    assert not [r for r in rows if r["status"] == "fail"]


def test_a_clean_stretch_passes_every_check(
        tmp_path: Path, clean: tuple[Path, dict[str, Any]],
        split: Callable[[Path, Path], list[Path]]) -> None:
    events, labels = clean
    summary, settings = one_pass(tmp_path, events, split)
    assert summary.rows_out == labels["valid_events"] and not summary.held
    rows = results(settings)
    judged = [r for r in rows if r["status"] in ("pass", "warn", "fail")]
    assert len(judged) > 50
    assert [r for r in judged if r["status"] != "pass"] == []
    store = QualityStore(open_state(settings.state_url))
    runs = [s for s in store.scores() if s["partition"] == "*"]
    assert runs and all(s["score"] == 100.0 for s in runs)
    assert store.held() == []
