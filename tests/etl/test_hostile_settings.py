"""Every setting whose value reaches SQL or a file path in the ETL, given a hostile value: it is
refused by the settings with one ConfigError line naming the key, or it reaches SQL only as a
quoted, checked literal (the statement after the `;` is never run: no file is written).

DuckDB's `execute` runs every statement of a string, so a value pasted into SQL unquoted
could run anything; each case here tries to make DuckDB write a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mad import lake
from mad.config import AwsSettings, load_settings
from mad.errors import ConfigError
from mad.etl.engines.duckdb.engine import DuckDBEngine
from mad.etl.runner import EtlRunner
from mad.stores import open_store

INJECT = "1GB'; COPY (SELECT 1) TO 'x.csv'; SET x='1"
HOUR6 = 1_793_512_800.0  # 2026-11-01T06:00:00Z

# (setting, hostile value): refused by the settings, one line naming the key
REFUSED: list[tuple[str, Any]] = [
    ("etl.engine.duckdb.memory_limit", INJECT),  # SET memory_limit
    ("etl.engine.duckdb.threads", "2; COPY (SELECT 1) TO 'x.csv'"),  # SET threads
    ("etl.engine.duckdb.temp_directory", "/tmp/x\n'; COPY (SELECT 1) TO 'x.csv'; --"),
    ("etl.target_file_bytes", "134217728, FORMAT CSV"),  # COPY ... FILE_SIZE_BYTES
    ("etl.windows", ["1m", "1h'; COPY (SELECT 1) TO 'x.csv'; --"]),  # plan SQL and window=
    ("etl.batch_bytes", "1073741824; x"),  # how many raw files a run reads
    ("etl.batch_files", -1),
    ("etl.dedup_horizon_hours", "168 OR 1=1"),  # which partitions are read
    ("etl.unreadable_attempts", 0),
    ("etl.engine.spark.master", "local[2]; COPY"),  # the session's master URL
    ("etl.engine.spark.jars", ["/a.jar,/tmp/evil.jar"]),  # one comma-separated setting
]


@pytest.mark.parametrize(("key", "value"), REFUSED, ids=[k for k, _ in REFUSED])
def test_a_hostile_value_is_refused_in_one_line_naming_the_setting(
    key: str, value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_settings(env={}, overrides={key: value})
    assert key in str(refused.value) and "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_the_memory_limit_from_the_environment_stops_mad_etl_run_in_one_line(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"),
           "MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": INJECT}
    done = subprocess.run([sys.executable, "-m", "mad.cli", "etl", "run"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "etl.engine.duckdb.memory_limit" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no x.csv, and not even a data folder


def test_an_engine_built_directly_checks_its_limits_too() -> None:
    with pytest.raises(ConfigError, match="memory_limit"):
        DuckDBEngine(memory_limit=INJECT)
    with pytest.raises(ConfigError, match="temp_directory"):
        DuckDBEngine(temp_directory="/tmp/a\0b")


def test_a_spill_folder_with_quotes_in_its_name_is_only_a_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    spill = tmp_path / "sp'; COPY (SELECT 1) TO 'x.csv'; SET x='ill"
    engine = DuckDBEngine(memory_limit="1GB", temp_directory=str(spill))
    with engine._database() as con:
        (folder,) = con.execute("SELECT current_setting('temp_directory')").fetchone() or ("",)
    engine.close()
    assert str(folder).startswith(str(spill) + "/run-")
    assert not (tmp_path / "x.csv").exists()


def test_s3_settings_reach_duckdb_only_as_literals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The region, keys and endpoint go into DuckDB's CREATE SECRET as quoted literals."""
    monkeypatch.chdir(tmp_path)
    hostile = "x'); COPY (SELECT 1) TO 'x.csv'; CREATE SECRET y (TYPE S3, KEY_ID 'k"
    aws = AwsSettings(region=hostile, access_key_id=hostile, secret_access_key=hostile,
                      endpoint_url="http://127.0.0.1:9")
    con = DuckDBEngine(memory_limit="1GB", s3=aws).connect()
    try:
        names = {r[0] for r in con.execute("SELECT name FROM duckdb_secrets()").fetchall()}
    finally:
        con.close()
    assert names == {"mad_s3"}
    assert not (tmp_path / "x.csv").exists()


def test_a_lake_and_data_folder_with_quotes_in_their_paths_are_only_literals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every raw file and Parquet file the engine reads or writes is named in SQL by a path
    under `lake.url` (and `data_dir`): a whole pass over a lake whose path holds SQL works."""
    monkeypatch.chdir(tmp_path)
    odd = "l'; COPY (SELECT 1) TO 'x.csv'; SELECT '"
    lake_dir, data = tmp_path / f"{odd}lake", tmp_path / f"{odd}data"
    event = {"event_id": "e1", "timestamp": "2026-11-01T06:10:00Z", "service": "auth",
             "event_type": "auth.login.succeeded", "kind": "log"}
    open_store(str(lake_dir), create=True).put(lake.raw_key("log", "auth", HOUR6, gzip=False),
                                               (json.dumps(event) + "\n{bad\n").encode())
    runner = EtlRunner(load_settings(env={}, overrides={
        "data_dir": str(data), "lake.url": str(lake_dir),
        "etl.engine.duckdb.memory_limit": "1GB",
        "etl.engine.duckdb.temp_directory": str(tmp_path / f"{odd}spill")}))
    try:
        summary = runner.run_once()
    finally:
        runner.close()
    assert (summary.rows_out, summary.quarantined, summary.days_aggregated) == (
        1, 1, ["2026-11-01"])
    assert not (tmp_path / "x.csv").exists()
