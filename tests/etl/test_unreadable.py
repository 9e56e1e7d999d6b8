"""A raw file that cannot be read whole (a `.gz` cut short, or with a corrupt byte) never
reaches the lake in part: it stays pending and is retried by the next passes, then it is
quarantined whole as `unreadable_file` and counted, as `mad etl status` shows. The engines'
own check is in `test_engine_contract.py`, the Spark pass in `test_spark_run.py`."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from mad import lake
from mad.config import Settings, load_settings
from mad.etl.runner import EtlRunner
from mad.state import EtlLedger, UnreadableFiles, open_state
from mad.stores import open_store

HOUR6 = 1_793_512_800.0  # 2026-11-01T06:00:00Z


def events(first: int, n: int) -> bytes:
    return "".join(json.dumps({
        "event_id": f"ev-{i}", "timestamp": f"2026-11-01T06:{i % 60:02d}:{i // 60:02d}Z",
        "service": "auth", "event_type": "auth.token.issued", "kind": "log",
        "metrics": {"latency_ms": 5.0}, "message": "x" * 200}) + "\n"
        for i in range(first, first + n)).encode()


def settings_for(tmp_path: Path, attempts: int) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "data"), "lake.url": str(tmp_path / "lake"),
        "etl.engine.duckdb.memory_limit": "1GB", "etl.unreadable_attempts": attempts,
        "etl.engine.duckdb.temp_directory": str(tmp_path / "spill")})


def ids(tmp_path: Path) -> set[str]:
    found = list((tmp_path / "lake" / "md-transformed-logs").rglob("*.parquet"))
    if not found:
        return set()
    listing = ", ".join(f"'{f}'" for f in found)
    return {r[0] for r in duckdb.sql(f"SELECT event_id FROM read_parquet([{listing}])")
            .fetchall()}


def quarantined(tmp_path: Path) -> list[tuple[object, ...]]:
    found = list((tmp_path / "lake" / "md-quarantine").rglob("*.parquet"))
    listing = ", ".join(f"'{f}'" for f in found)
    return duckdb.sql(f"SELECT reason, line, source_file, line_no FROM read_parquet("
                      f"[{listing}]) ORDER BY ALL").fetchall() if found else []


def test_a_cut_gz_is_retried_then_quarantined_whole_and_counted(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "lake"), create=True)
    good = lake.raw_key("log", "auth", HOUR6)
    store.put(good, gzip.compress(events(0, 50), 1))
    cut = lake.raw_key("log", "auth", HOUR6)
    whole = gzip.compress(events(1000, 924), 1)
    store.put(cut, whole[: len(whole) // 2])
    flipped = lake.raw_key("log", "auth", HOUR6)
    broken = bytearray(gzip.compress(events(5000, 300), 1))
    broken[len(broken) // 2] ^= 0xFF
    store.put(flipped, bytes(broken))
    settings = settings_for(tmp_path, attempts=2)

    runner = EtlRunner(settings)
    try:
        first = runner.run_once()  # the good file only; the bad ones wait
        assert (first.runs, first.files, first.rows_out) == (1, 1, 50)
        assert (first.unreadable, first.waiting) == (0, 2)
        assert ids(tmp_path) == {f"ev-{i}" for i in range(50)}
        waiting = {r["key"]: r for r in UnreadableFiles(open_state(settings.state_url)).all()}
        assert sorted(waiting) == sorted([cut, flipped])
        assert "truncated" in waiting[cut]["reason"] and waiting[cut]["attempts"] == 1
        assert "incorrect data check" in waiting[flipped]["reason"]

        second = runner.run_once()  # the second attempt gives up: quarantined whole
        assert (second.runs, second.files, second.unreadable, second.waiting) == (1, 2, 2, 0)
        assert second.rows_in == 0
        assert ids(tmp_path) == {f"ev-{i}" for i in range(50)}  # not one line of either
        rows = quarantined(tmp_path)
        assert rows == sorted([("unreadable_file", None, str(tmp_path / "lake" / k), 0)
                               for k in (cut, flipped)])
        assert runner.run_once().runs == 0  # both are done
    finally:
        runner.close()
    assert UnreadableFiles(open_state(settings.state_url)).all() == []
    ledger = EtlLedger(open_state(settings.state_url))
    assert ledger.count_totals("events") == {"unreadable": 2, "reused": 0}

    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"),
           "MAD_LAKE__URL": str(tmp_path / "lake")}
    status = subprocess.run([sys.executable, "-m", "mad.cli", "etl", "status"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "unreadable raw files: 2 quarantined whole, 0 waiting" in status.stdout


def test_a_cut_gz_that_arrives_whole_later_is_read_whole(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "lake"), create=True)
    key = lake.raw_key("log", "auth", HOUR6)
    whole = gzip.compress(events(0, 924), 1)
    store.put(key, whole[: len(whole) // 2])  # a copy still arriving, say
    settings = settings_for(tmp_path, attempts=3)
    runner = EtlRunner(settings)
    try:
        first = runner.run_once()
        assert (first.runs, first.waiting, first.rows_in) == (0, 1, 0)
        assert ids(tmp_path) == set()
        store.put(key, whole)
        second = runner.run_once()
        assert (second.runs, second.rows_out, second.waiting) == (1, 924, 0)
    finally:
        runner.close()
    assert len(ids(tmp_path)) == 924
    assert UnreadableFiles(open_state(settings.state_url)).all() == []


def test_a_raw_file_the_engine_fails_on_is_set_aside_and_the_others_are_read(
    tmp_path: Path,
) -> None:
    """DuckDB refuses a whole read over one file with bytes that are not UTF-8 (Spark reads
    them as U+FFFD): the run is tried again without that file, which is retried by the next
    passes, then quarantined whole."""
    store = open_store(str(tmp_path / "lake"), create=True)
    good = lake.raw_key("log", "auth", HOUR6, gzip=False)
    store.put(good, events(0, 20))
    latin1 = lake.raw_key("log", "auth", HOUR6, gzip=False)
    store.put(latin1, events(100, 5) + '{"event_id": "é"}\n'.encode("latin-1"))
    settings = settings_for(tmp_path, attempts=2)
    runner = EtlRunner(settings)
    try:
        first = runner.run_once()
        assert (first.runs, first.rows_out, first.waiting) == (1, 20, 1)
        ledger = EtlLedger(open_state(settings.state_url))
        failed = [r for r in ledger.recent_runs() if r["status"] == "failed"]
        assert len(failed) == 1 and latin1 in failed[0]["error"]
        second = runner.run_once()
        assert (second.runs, second.unreadable, second.rows_in) == (1, 1, 0)
    finally:
        runner.close()
    assert ids(tmp_path) == {f"ev-{i}" for i in range(20)}
    assert quarantined(tmp_path) == [("unreadable_file", None, str(tmp_path / "lake" / latin1),
                                      0)]
