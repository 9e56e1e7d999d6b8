"""With `etl.engine.backend=spark`, Spark does all of a pass's work: the pass runs in a child
process where DuckDB cannot be imported at all, and ends with the counts and rows the DuckDB
engine gives on a copy of the same lake.

The lake is made to exercise everything a pass does to data: a first pass (DuckDB, one raw
file per run) leaves one event and one quarantine file per file in one hour; all of those
files are made pending again and two new ones arrive, so the pass under test probes the
touched partitions, merges the new events into the existing ones (7 duplicates), drops the
7 quarantined lines the live partition already holds, appends the 2 new ones (8 small files:
the partition is compacted), counts what it wrote and recomputes the day's aggregates. One
more raw file is a `.gz` cut short: Spark's executors find it unreadable and the pass
quarantines it whole (`etl.unreadable_attempts` 1).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mad import lake
from mad.config import Settings, load_settings
from mad.etl.compact import AUTO_SMALL_FILES
from mad.etl.runner import AGGREGATE, COMPACT, PLAN, EtlRunner
from mad.state import EtlLedger, open_state
from mad.stores import open_store
from tests.etl.helpers import float_blind, same

pytestmark = [pytest.mark.spark, pytest.mark.slow]

HOUR6 = 1_793_512_800.0  # 2026-11-01T06:00:00Z
FIRST = AUTO_SMALL_FILES - 1  # raw files read before the pass under test
PARTITION = "date=2026-11-01/hour=06"

# The child: DuckDB made unimportable before mad is imported; one pass; its summary as JSON.
CHILD = """
import dataclasses, json, sys
sys.modules["duckdb"] = None
sys.modules["duckdb_extensions"] = None
from mad.config import load_settings
from mad.etl.runner import EtlRunner
runner = EtlRunner(load_settings(env={}, overrides=json.loads(sys.argv[1])))
try:
    summary = runner.run_once()
finally:
    runner.close()
assert sys.modules.get("duckdb") is None
print(json.dumps(dataclasses.asdict(summary)))
"""


def overrides(root: Path, engine: str) -> dict[str, Any]:
    return {"data_dir": str(root / "data"), "lake.url": str(root / "lake"),
            "etl.engine.backend": engine, "etl.engine.duckdb.memory_limit": "1GB",
            "etl.engine.spark.master": "local[2]", "etl.unreadable_attempts": 1}


def settings(root: Path, engine: str, **extra: Any) -> Settings:
    return load_settings(env={}, overrides={**overrides(root, engine), **extra})


def put_raw(root: Path, first: int, n: int) -> None:
    """`n` raw log files of ingest hour 06, each one event of that hour and one bad line."""
    store = open_store(str(root / "lake"), create=True)
    for i in range(first, first + n):
        event = {"event_id": f"ev-{i}", "timestamp": f"2026-11-01T06:{i:02d}:00Z",
                 "service": "auth", "event_type": "auth.token.issued", "kind": "log",
                 "metrics": {"latency_ms": 5.0 + i}}
        store.put(lake.raw_key("log", "auth", HOUR6, gzip=False),
                  (json.dumps(event) + "\n" + f"{{not json {i}\n").encode())


def rows(root: Path, dataset: str, columns: str) -> list[tuple[Any, ...]]:
    files = sorted(str(p) for p in (root / "lake" / dataset).rglob("*.parquet"))
    listing = ", ".join(f"'{f}'" for f in files)
    found = duckdb.sql(f"SELECT {columns} FROM read_parquet([{listing}], "
                       f"hive_partitioning = true, hive_types_autocast = false)").fetchall()
    return sorted(found, key=float_blind)


def prepare(root: Path) -> None:
    """A lake and state after a first pass, its files pending again and 2 new ones (made in
    place: the lake's rows name their raw files by path)."""
    put_raw(root, 0, FIRST)
    runner = EtlRunner(settings(root, "duckdb", **{"etl.batch_files": 1}))
    try:
        assert runner.run_once().compacted == []
        assert len(runner.lake.files(f"{lake.QUARANTINE_DATASET}/{PARTITION}/")) == FIRST
        assert runner.backfill(0.0, 4_102_444_800.0) == FIRST
    finally:
        runner.close()
    put_raw(root, FIRST, 2)
    whole = gzip.compress(b"".join(
        json.dumps({"event_id": f"cut-{i}", "timestamp": "2026-11-01T06:30:00Z",
                    "service": "auth", "event_type": "auth.token.issued",
                    "kind": "log"}).encode() + b"\n" for i in range(500)), 1)
    open_store(str(root / "lake")).put(lake.raw_key("log", "auth", HOUR6), whole[:len(whole) // 2])


def test_a_spark_pass_needs_no_duckdb_and_gives_the_duckdb_results(tmp_path: Path) -> None:
    on_spark, on_duckdb = tmp_path / "spark", tmp_path / "duckdb"
    prepare(on_spark)
    prepare(on_duckdb)

    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(overrides(on_spark, "spark"))],
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}, capture_output=True, text=True,
        timeout=1200)
    assert child.returncode == 0, child.stderr[-4000:]
    got = json.loads(child.stdout.strip().splitlines()[-1])

    runner = EtlRunner(settings(on_duckdb, "duckdb"))
    try:
        want = runner.run_once()
    finally:
        runner.close()
    quarantine = f"{lake.QUARANTINE_DATASET}/{PARTITION}"
    assert want.compacted == [quarantine]
    assert (want.runs, want.rows_in, want.rows_out, want.duplicates, want.quarantined,
            want.unreadable) == (1, 2 * (FIRST + 2), 2, FIRST, FIRST + 2, 1)
    assert got == dataclasses.asdict(want)

    ledger = EtlLedger(open_state(settings(on_spark, "spark").state_url))
    runs = ledger.recent_runs(50)
    # the first pass: FIRST events runs and the day's aggregates; then one of each plan
    assert len(runs) == FIRST + 4 and all(r["status"] == "succeeded" for r in runs)
    assert sorted(r["plan"] for r in runs if r["engine"] == "spark") == sorted(
        [PLAN, AGGREGATE, COMPACT])
    written = {(p["dataset"], p["partition"]): (p["rows"], p["files"])
               for p in ledger.partitions()}
    assert written[(lake.QUARANTINE_DATASET, PARTITION)] == (FIRST + 3, 1)

    # raw file names differ between the two lakes (a uuid each): rows are compared without
    for dataset, columns in (
        (lake.transformed_dataset("log"), "event_id, event_time, latency_ms, date, hour"),
        (lake.QUARANTINE_DATASET, "reason, line, line_no, source_file LIKE '%.jsonl', date, hour"),
        (lake.AGGREGATES_DATASET, '"window", window_start, service, series, "count", avg, p95'),
    ):
        spark_rows = rows(on_spark, dataset, columns)
        assert spark_rows and same(spark_rows, rows(on_duckdb, dataset, columns)), dataset
    assert len(list((on_spark / "lake" / quarantine).glob("*.parquet"))) == 1
