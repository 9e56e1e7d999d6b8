"""`mad quality report|accept` in a child process over a real state database: the pipeline's
checked runs plus one run whose failing hour the gate holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.query.conftest import BuiltLake, build_lake, copy_lake
from tests.query.quality_rows import DATASET, hours_of, record_run, run_results
from tests.query.test_quality import DAY, HELD
from tests.test_cli import mad, one_line_error


@pytest.fixture(scope="module")
def checked_lake(tmp_path_factory: pytest.TempPathFactory) -> BuiltLake:
    """`tests/query/conftest.py`'s pipeline lake (its ETL pass checked every run)."""
    return build_lake(tmp_path_factory.mktemp("quality_cli_lake"))


@pytest.fixture
def config(checked_lake: BuiltLake, tmp_path: Path) -> Path:
    """A mad.yaml over a copy of the pipeline lake with one more checked run holding HELD."""
    built = copy_lake(checked_lake, tmp_path / "lake")
    record_run(built.settings, "events-test-1", run_results(hours_of(DAY, 3), failing=HELD))
    path = tmp_path / "mad.yaml"
    path.write_text(f"data_dir: {built.root}\n")
    return path


def test_report_lists_failed_checks_first_with_scores_and_held(config: Path) -> None:
    proc = mad("quality", "report", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("quality since ") and "1 fail" in lines[0]
    held = lines.index("held by the gate: 1 partition (`mad quality accept PARTITION "
                       "--reason ...` lets one through)")
    assert lines[held + 1].startswith(f"  {DATASET}/{HELD}: completeness service null_rate")
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("STATUS"))
    first = lines[header + 1].split()
    assert first[:6] == ["FAIL", "error", "gate", DATASET, HELD, "completeness"]
    statuses = [line.split()[0] for line in lines[header + 1:] if line.startswith("  ")
                and line.split()[0] in ("FAIL", "WARN", "pass", "skip", "info")]
    assert statuses[0] == "FAIL" and "WARN" in statuses
    assert statuses.index("WARN") < statuses.index("pass")
    assert any("more passed, skipped or info results (--all lists them)" in line
               for line in lines)
    runs = lines.index("scores per run (newest first; `*` = the whole run):")
    assert lines[runs + 1].split()[0] == "events-test-1"
    whole = next(line for line in lines[runs:] if line.split()[:2] == [DATASET, "*"])
    assert "completeness 83.33" in whole
    assert lines[-1].startswith("score: part = 100 × mean")
    every = mad("quality", "report", "--all", "--config", str(config))
    assert "--all lists them" not in every.stdout
    assert len(every.stdout.splitlines()) > len(lines)


def test_report_json_parses_and_filters(config: Path) -> None:
    proc = mad("quality", "report", "--json", "--partition", HELD, "--since", "2h",
               "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {r["partition"] for r in data["results"]} == {HELD}
    assert data["results"][0]["status"] == "fail"
    assert data["held"][0]["partition"] == HELD
    assert data["partition"] == HELD and data["since"].endswith("Z")
    future = mad("quality", "report", "--json", "--since", "2099-01-01T00:00:00+00:00",
                 "--config", str(config))
    assert json.loads(future.stdout)["results"] == []
    one_line_error(mad("quality", "report", "--since", "yesterday-ish", "--config",
                       str(config)), "--since 'yesterday-ish'")


def test_accept_needs_a_reason_and_prints_what_it_let_through(config: Path) -> None:
    one_line_error(mad("quality", "accept", HELD, "--config", str(config)), "--reason")
    one_line_error(mad("quality", "accept", HELD, "--reason", "  ", "--config", str(config)),
                   "a reason is required")
    proc = mad("quality", "accept", HELD, "--reason", "late service field, checked",
               "--by", "alice", "--dataset", DATASET, "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"accepted {DATASET}/{HELD} by alice: late service field, checked (held for: "
        "completeness service null_rate = 0.2 (threshold 0.05))",
        "1 partition accepted"]
    report = json.loads(mad("quality", "report", "--json", "--config", str(config)).stdout)
    assert report["held"] == []


def test_accept_of_a_partition_not_held_is_one_line_and_fails(config: Path) -> None:
    proc = mad("quality", "accept", "date=2026-11-01/hour=02", "--reason", "why not",
               "--config", str(config))
    one_line_error(proc, "nothing held: partition date=2026-11-01/hour=02 is not held",
                   f"held now: {DATASET}/{HELD}")
    assert proc.returncode == 2 and proc.stdout == ""
