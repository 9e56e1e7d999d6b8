"""`mad etl run` end to end on a generated raw lake: counts, idempotence, late data, state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb

from mad.config import Settings, load_settings
from mad.etl.runner import EtlRunner
from mad.state import EtlLedger, open_state
from mad.stores import open_store


def settings_for(tmp_path: Path, lake: Path) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "data"), "lake.url": str(lake),
        "etl.engine.duckdb.memory_limit": "1GB", "etl.batch_files": 40,
    })


def event_ids(lake: Path) -> list[str]:
    rows = duckdb.sql(f"SELECT event_id FROM read_parquet('{lake}/md-transformed-*/*/*/*.parquet')"
                      ).fetchall()
    return [r[0] for r in rows]


def test_one_pass_accounts_for_every_line_and_a_second_pass_does_nothing(
    tmp_path: Path, raw_lake: tuple[Path, list[Path]], backfill: tuple[Path, dict[str, Any]],
) -> None:
    lake, files = raw_lake
    labels = backfill[1]
    settings = settings_for(tmp_path, lake)
    runner = EtlRunner(settings)
    try:
        first = runner.run_once()
        assert first.files == len(files) and first.runs >= 2
        assert first.rows_in == first.rows_out + first.duplicates + first.quarantined
        assert first.rows_in == labels["lines"]
        assert first.quarantined == labels["faults"]["malformed_total"]
        ids = event_ids(lake)
        assert len(ids) == len(set(ids)) == first.rows_out == labels["valid_events"]
        assert first.days_aggregated
        windows = {p.name for p in (lake / "md-aggregates").iterdir()}
        assert windows == {"window=1m", "window=5m", "window=1h"}
        before = sorted(ids)
        second = runner.run_once()
        assert (second.runs, second.files) == (0, 0)
        assert sorted(event_ids(lake)) == before
    finally:
        runner.close()
    runs = EtlLedger(open_state(settings.state_url)).recent_runs(100)
    assert all(r["status"] == "succeeded" for r in runs)
    assert sum(r["rows_in"] for r in runs) == labels["lines"]


def test_status_command_shows_runs_and_backlog_and_creates_nothing(
    tmp_path: Path, raw_lake: tuple[Path, list[Path]],
) -> None:
    lake, _ = raw_lake
    data = tmp_path / "data"
    env = {**os.environ, "MAD_DATA_DIR": str(data), "MAD_LAKE__URL": str(lake)}

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mad.cli", "etl", "status", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    missing = status("--lake", str(tmp_path / "no-such-lake"))  # a mistyped --lake
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("mad: error: no lake at ")
    assert missing.stderr.count("\n") == 1
    before = status()  # the lake is there, but nothing has run with this data folder
    assert before.returncode == 2 and "no state database at" in before.stderr
    assert before.stderr.count("\n") == 1
    assert not data.exists() and not (tmp_path / "no-such-lake").exists()
    open_state(f"sqlite:///{data / 'state.db'}").dispose()  # as the raw writer makes it
    empty = status()
    assert empty.returncode == 0 and "runs: none yet" in empty.stdout
    assert "backlog: " in empty.stdout and "backlog: 0 raw files" not in empty.stdout

    run = subprocess.run([sys.executable, "-m", "mad.cli", "etl", "run"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "new events" in run.stdout
    after = status()
    assert after.returncode == 0, after.stderr
    assert "succeeded" in after.stdout and "backlog: 0 raw files" in after.stdout
    assert "aggregates due: 0 days" in after.stdout


def partition_ids(lake: Path, rel: str) -> list[str]:
    return sorted(r[0] for r in duckdb.sql(
        f"SELECT event_id FROM read_parquet('{lake}/md-transformed-logs/{rel}/*.parquet')"
    ).fetchall())


def test_reprocess_rebuilds_a_partition_and_backfill_restores_a_lost_one(
    tmp_path: Path, raw_lake: tuple[Path, list[Path]],
) -> None:
    lake, _ = raw_lake
    runner = EtlRunner(settings_for(tmp_path, lake))
    try:
        runner.run_once()
        everything = sorted(event_ids(lake))
        parts = sorted(p.relative_to(lake / "md-transformed-logs").as_posix()
                       for p in (lake / "md-transformed-logs").glob("date=*/hour=*"))
        target = parts[len(parts) // 2]
        before = partition_ids(lake, target)
        assert runner.reprocess("md-transformed-logs", target) > 0
        assert not (lake / "md-transformed-logs" / target).exists()
        again = runner.run_once()
        assert again.runs > 0 and again.rows_out == len(before)
        assert partition_ids(lake, target) == before
        assert sorted(event_ids(lake)) == everything

        lost = parts[0]
        lost_ids = partition_ids(lake, lost)
        shutil.rmtree(lake / "md-transformed-logs" / lost)
        assert runner.backfill(0.0, 4_102_444_800.0) > 0
        restored = runner.run_once()
        assert restored.rows_out == len(lost_ids)
        assert restored.duplicates == restored.rows_in - restored.rows_out - restored.quarantined
        assert partition_ids(lake, lost) == lost_ids
        assert sorted(event_ids(lake)) == everything
        # every file was read two or three times: each bad line is quarantined once
        lines = duckdb.sql(f"SELECT source_file, line_no FROM read_parquet("
                           f"'{lake}/md-quarantine/*/*/*.parquet')").fetchall()
        assert lines and len(lines) == len(set(lines))
    finally:
        runner.close()


def test_a_raw_file_outside_the_layout_is_skipped_and_left_in_place(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    stray = lake / "md-raw-logs/service=auth/year=2026/month=11/day=01/part-stray.jsonl"
    stray.parent.mkdir(parents=True)
    stray.write_text('{"event_id": "x"}\n')
    good = lake / "md-raw-logs/service=auth/year=2026/month=11/day=01/hour=06"
    good.mkdir(parents=True)
    (good / ("part-" + "a" * 32 + ".jsonl")).write_text(
        '{"event_id": "e1", "timestamp": "2026-11-01T06:10:00Z", "service": "auth", '
        '"event_type": "auth.token.issued", "kind": "log", "metrics": {"latency_ms": 5.0}}\n')
    runner = EtlRunner(settings_for(tmp_path, lake))
    try:
        summary = runner.run_once()
    finally:
        runner.close()
    assert (summary.files, summary.rows_out) == (1, 1)
    assert stray.exists()


def test_bad_lines_of_a_file_read_again_in_another_batch_are_quarantined_once(
    tmp_path: Path,
) -> None:
    from mad import lake as raw_lake

    lake = tmp_path / "lake"
    store = open_store(str(lake))
    for i in range(3):
        store.put(raw_lake.raw_key("log", "auth", 1_793_512_800.0, gzip=False),
                  f"{{not json {i}\n".encode())
    one_each = load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "data"), "lake.url": str(lake), "etl.batch_files": 1})
    runner = EtlRunner(one_each)
    try:
        assert runner.run_once().runs == 3
        assert runner.backfill(0.0, 4_102_444_800.0) == 3
    finally:
        runner.close()
    runner = EtlRunner(settings_for(tmp_path, lake))  # all three files in one batch now
    try:
        again = runner.run_once()
    finally:
        runner.close()
    assert (again.runs, again.quarantined) == (1, 3)
    lines = duckdb.sql(f"SELECT line FROM read_parquet('{lake}/md-quarantine/*/*/*.parquet')"
                       ).fetchall()
    assert sorted(r[0] for r in lines) == [f"{{not json {i}" for i in range(3)]
