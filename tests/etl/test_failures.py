"""A run that fails does not stop the pass: the other datasets still run, the failure is
recorded with one line that names the cause and what to do, and `mad etl run` ends with that
line and a non-zero exit code. A corrupt Parquet file in the lake and a full disk (a real
size-limited folder) are the two causes tried here, and what a failure is blamed on."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from mad import lake
from mad.config import load_settings
from mad.etl.failures import PassFailed, blame
from mad.etl.runner import EtlRunner
from mad.state import EtlLedger, open_state
from mad.stores import open_store
from tests.disks import SmallDisk, fill_disk

HOUR6 = 1_793_512_800.0  # 2026-11-01T06:00:00Z
TYPES = {"log": "auth.login.succeeded", "metric": "host.cpu", "apm": "auth.token_span"}
PARTITION = "date=2026-11-01/hour=06"


def put(lake_dir: Path, kind: str, first: int, n: int) -> None:
    body = "".join(json.dumps({
        "event_id": f"{kind}-{i}", "timestamp": f"2026-11-01T06:{i % 60:02d}:00Z",
        "service": "auth", "event_type": TYPES[kind], "kind": kind}) + "\n"
        for i in range(first, first + n))
    open_store(str(lake_dir), create=True).put(lake.raw_key(kind, "auth", HOUR6, gzip=False),
                                               body.encode())


def cli(tmp_path: Path, lake_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"), "MAD_LAKE__URL": str(lake_dir),
           "MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": "1GB"}
    return subprocess.run([sys.executable, "-m", "mad.cli", "etl", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def ids(lake_dir: Path, dataset: str) -> list[str]:
    files = [f for f in (lake_dir / dataset).rglob("*.parquet")]
    listing = ", ".join(f"'{f}'" for f in files)
    return sorted(r[0] for r in duckdb.sql(
        f"SELECT event_id FROM read_parquet([{listing}])").fetchall()) if files else []


@pytest.mark.loses_data  # the corrupt file also fails the pass's reconciliation
def test_a_corrupt_parquet_file_fails_its_run_only_and_says_how_to_rebuild(
    tmp_path: Path,
) -> None:
    lake_dir = tmp_path / "lake"
    for kind in TYPES:
        put(lake_dir, kind, 0, 5)
    assert cli(tmp_path, lake_dir, "run").returncode == 0
    (part,) = (lake_dir / "md-transformed-logs" / PARTITION).glob("*.parquet")
    part.write_bytes(b"PAR1 this is not a Parquet file any more")
    for kind in TYPES:  # more of every kind: the logs run reads the corrupt file
        put(lake_dir, kind, 5, 5)

    done = cli(tmp_path, lake_dir, "run")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    key = f"md-transformed-logs/{PARTITION}/{part.name}"
    # the logs run, and the aggregates of the day, which read every partition of it
    assert last.startswith("mad: error: 2 ETL run(s) failed: run events-")
    assert key in last and ("mad etl reprocess --dataset md-transformed-logs --partition "
                            f"{PARTITION}") in last
    for dataset in ("md-transformed-metrics", "md-transformed-apm"):  # the pass went on
        kind = dataset.rsplit("-", 1)[-1].rstrip("s")
        assert ids(lake_dir, dataset) == sorted(f"{kind}-{i}" for i in range(10))
    status = cli(tmp_path, lake_dir, "status")
    assert status.returncode == 0 and "failed" in status.stdout and key in status.stdout

    again = cli(tmp_path, lake_dir, "run")  # every later pass says the same, nothing else
    assert again.returncode == 1 and key in again.stderr.strip().splitlines()[-1]

    fixed = cli(tmp_path, lake_dir, "reprocess", "--dataset", "md-transformed-logs",
                "--partition", PARTITION)
    assert fixed.returncode == 0, fixed.stderr
    assert ids(lake_dir, "md-transformed-logs") == sorted(f"log-{i}" for i in range(10))
    assert cli(tmp_path, lake_dir, "run").returncode == 0


def test_a_full_disk_fails_the_run_in_one_line_and_the_next_pass_retries(
    tmp_path: Path, small_disk: SmallDisk,
) -> None:
    lake_dir = small_disk(4 * 2**20)
    put(lake_dir, "log", 0, 2000)
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "data"), "lake.url": str(lake_dir),
        "etl.engine.duckdb.memory_limit": "1GB",
        "etl.engine.duckdb.temp_directory": str(tmp_path / "spill")})
    filler = fill_disk(lake_dir)
    runner = EtlRunner(settings, sleep=lambda s: None)
    try:
        with pytest.raises(PassFailed) as failed:
            runner.run_once()
        message = str(failed.value)
        assert "\n" not in message and "disk full" in message
        assert failed.value.exit_code == 3  # transient
        (run,) = EtlLedger(open_state(settings.state_url)).recent_runs()
        assert run["status"] == "failed" and run["error"].startswith("disk full")
        assert not (lake_dir / ".staging").exists() or not any(
            (lake_dir / ".staging").iterdir())  # what it staged is gone: the space is back

        filler.unlink()
        again = runner.run_once()
        assert (again.runs, again.rows_out) == (1, 2000)
    finally:
        runner.close()
    assert ids(lake_dir, "md-transformed-logs") == sorted(f"log-{i}" for i in range(2000))
    shutil.rmtree(lake_dir / "md-transformed-logs")


def test_what_a_failure_is_blamed_on() -> None:
    raw = {"/lake/md-raw-logs/service=auth/year=2026/month=11/day=01/hour=06/part-a.jsonl":
           "md-raw-logs/service=auth/year=2026/month=11/day=01/hour=06/part-a.jsonl"}
    parquet = {"s3://b/lake/md-quarantine/date=2026-11-01/hour=06/part-q.parquet":
               "md-quarantine/date=2026-11-01/hour=06/part-q.parquet"}
    content = blame(duckdb.InvalidInputException(
        "Invalid Input Error: CSV Error on Line: 1\n  file = /lake/md-raw-logs/service=auth/"
        "year=2026/month=11/day=01/hour=06/part-a.jsonl"), raw, parquet)
    assert content.raw == next(iter(raw)) and not content.transient
    io = blame(duckdb.IOException("IO Error: reading /lake/md-raw-logs/service=auth/year=2026/"
                                  "month=11/day=01/hour=06/part-a.jsonl: Input/output error"),
               raw, parquet)
    assert io.raw is None and io.transient and not io.disk_full  # retried, not blamed
    spark_style = blame(RuntimeError("[FAILED_READ_FILE] Error while reading file s3a://b/lake/"
                                     "md-quarantine/date=2026-11-01/hour=06/part-q.parquet"),
                        raw, parquet)
    assert "md-quarantine/date=2026-11-01/hour=06/part-q.parquet" in spark_style.reason
    assert "mad etl backfill" in spark_style.reason
    full = blame(OSError(errno.ENOSPC, "No space left on device"), raw, parquet)
    assert full.disk_full and full.transient and full.reason.startswith("disk full")
    other = blame(ValueError("two\nlines"), raw, parquet)
    assert other.reason == "ValueError: two" and not other.transient
