"""Runs over generated raw data into a real local lake: counts, dedup, merge, idempotence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from mad.etl.engines import Engine
from mad.etl.parquet_lake import dataset_files
from tests.etl.helpers import read_rows, run_events

KINDS = {"log": "md-raw-logs", "metric": "md-raw-metrics", "apm": "md-raw-apm"}


def run_all(engine: Engine, lake: Path, files: list[Path]) -> dict[str, int]:
    total: dict[str, int] = {}
    for kind, folder in KINDS.items():
        counts = run_events(engine, lake, kind, [f for f in files if folder in str(f)])
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return total


def ids(lake: Path) -> list[str]:
    files = [f for d in ("md-transformed-logs", "md-transformed-metrics", "md-transformed-apm")
             for f in dataset_files(lake, d)]
    sql = "SELECT event_id FROM read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"
    return [r[0] for r in duckdb.sql(sql).fetchall()]


def test_counts_agree_with_labels(
    engine: Engine, raw_lake: tuple[Path, list[Path]], backfill: tuple[Path, dict[str, Any]]
) -> None:
    lake, files = raw_lake
    labels = backfill[1]
    c = run_all(engine, lake, files)
    assert c["count_in"] == labels["lines"]
    assert c["count_in"] == c["count_new"] + c["count_duplicates"] + c["count_quarantined"]
    assert c["count_quarantined"] == labels["faults"]["malformed_total"]
    assert c["count_duplicates"] == labels["faults"]["duplicates"]
    assert c["count_new"] == labels["valid_events"]
    got = ids(lake)
    assert len(got) == len(set(got)) == labels["valid_events"]
    q = dataset_files(lake, "md-quarantine")
    reasons = duckdb.sql("SELECT reason, count(*) FROM read_parquet(["
                         + ", ".join(f"'{f}'" for f in q) + "]) GROUP BY reason").fetchall()
    assert sum(n for _, n in reasons) == labels["faults"]["malformed_total"]
    services = duckdb.sql("SELECT DISTINCT service FROM read_parquet(["
                          + ", ".join(f"'{f}'" for f in dataset_files(lake, "md-transformed-logs"))
                          + "])").fetchall()
    assert ("unknown",) not in services and (None,) not in services


def test_overlapping_runs_and_rerun_change_nothing(
    engine: Engine, raw_lake: tuple[Path, list[Path]]
) -> None:
    lake, files = raw_lake
    logs = sorted(f for f in files if "md-raw-logs" in str(f))
    half = len(logs) // 2
    run_events(engine, lake, "log", logs[: half + 3])
    run_events(engine, lake, "log", logs[half - 3 :])  # overlaps the first run
    got = ids(lake)
    assert len(got) == len(set(got))
    before = read_rows(dataset_files(lake, "md-transformed-logs"))
    counts = run_events(engine, lake, "log", logs[half - 3 :])
    assert counts["count_new"] == 0 and counts["events"] == 0
    assert read_rows(dataset_files(lake, "md-transformed-logs")) == before


def test_late_event_lands_in_event_hour(engine: Engine, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    ingest = lake / "md-raw-logs/service=auth/year=2026/month=11/day=01/hour=09"
    ingest.mkdir(parents=True)
    late = {"event_id": "late-1", "timestamp": "2026-11-01T06:10:00Z",
            "event_type": "auth.token.issued", "kind": "log", "metrics": {"latency_ms": 5.0}}
    (ingest / ("part-" + "b" * 32 + ".jsonl")).write_text(json.dumps(late) + "\n")
    earlier = lake / "md-raw-logs/service=auth/year=2026/month=11/day=01/hour=06"
    earlier.mkdir(parents=True)
    on_time = {**late, "event_id": "on-time", "timestamp": "2026-11-01T06:20:00Z"}
    (earlier / ("part-" + "c" * 32 + ".jsonl")).write_text(json.dumps(on_time) + "\n")
    run_events(engine, lake, "log", earlier.glob("*.jsonl"))
    counts = run_events(engine, lake, "log", ingest.glob("*.jsonl"))
    assert counts["count_late"] == 1 and counts["events"] == 2  # merged with on-time's row
    part = lake / "md-transformed-logs/date=2026-11-01/hour=06"
    rows = read_rows(str(part / "*.parquet"))
    assert sorted(r[0] for r in rows) == ["late-1", "on-time"]
    assert len(list(part.glob("*.parquet"))) == 1


def test_a_local_marker_names_its_datasets_and_appended_files_by_key(
    engine: Engine, raw_lake: tuple[Path, list[Path]]
) -> None:
    """Local specifics beyond the contract suite's recovery: the marker, not the caller's
    fallback targets, says where a committed publish goes; appends are named by key."""
    from mad.etl.parquet_lake import commit, recover, staging_dir
    from mad.etl.transforms.events import events_plan

    lake, files = raw_lake
    metrics = [str(f) for f in files if "md-raw-metrics" in str(f)]
    out = staging_dir(lake, "events-killed") / "out"
    counts = engine.execute(events_plan("metric"), metrics, {"existing": []}, str(out))
    commit(lake, "events-killed", {"events": "md-transformed-metrics"},
           append={"quarantine": "md-quarantine"}, key="k")
    # the process dies here; the next start recovers, whatever targets it would pass
    recover(lake, {"events": "md-transformed-logs"})
    assert not (lake / "md-transformed-logs").exists()
    assert len(read_rows(dataset_files(lake, "md-transformed-metrics"))) == counts["events"]
    quarantined = dataset_files(lake, "md-quarantine")
    assert len(read_rows(quarantined, order="source_file, line_no")) == counts["quarantine"]
    assert all(Path(f).name.startswith("part-k-") for f in quarantined)
    assert not any((lake / ".staging").iterdir())
