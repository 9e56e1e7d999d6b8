"""Compaction toward `etl.target_file_bytes`: small files merged (by a pass and by
`mad etl compact`), a large file split, on a local lake and on S3; rows never change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb

from mad import lake
from mad.config import AwsSettings, Settings, load_settings
from mad.etl.compact import AUTO_SMALL_FILES
from mad.etl.engines import ENGINES
from mad.etl.publish import PartitionStore
from mad.etl.runner import COMPACT, QUARANTINE, EtlRunner
from mad.stores import open_store
from tests.etl.helpers import lake_connection

HOUR6 = 1_793_512_800.0  # 2026-11-01T06:00:00Z
PARTITION = "date=2026-11-01/hour=06"


def settings_for(tmp: Path, url: str, aws: AwsSettings | None = None,
                 extra: dict[str, Any] | None = None) -> Settings:
    overrides: dict[str, Any] = {"data_dir": str(tmp / "data"), "lake.url": url,
                                 "etl.engine.duckdb.memory_limit": "1GB", "etl.batch_files": 1,
                                 **(extra or {})}
    if aws is not None:
        overrides.update({"aws.endpoint_url": aws.endpoint_url, "aws.region": aws.region,
                          "aws.access_key_id": aws.access_key_id,
                          "aws.secret_access_key": aws.secret_access_key})
    return load_settings(env={}, overrides=overrides)


def put_raw_files(url: str, n: int, aws: AwsSettings | None = None) -> None:
    """`n` raw log files of one ingest hour (06), each with one valid event of that hour and
    one line that is not JSON (so every run appends one small quarantine file there)."""
    store = open_store(url, aws, create=True)
    for i in range(n):
        event = {"event_id": f"ev-{i}", "timestamp": f"2026-11-01T06:{i:02d}:00Z",
                 "event_type": "auth.token.issued", "kind": "log",
                 "metrics": {"latency_ms": 5.0 + i}}
        text = json.dumps(event) + "\n" + f"{{not json {i}\n"
        store.put(lake.raw_key("log", "auth", HOUR6, gzip=False), text.encode())


def rows(parts: PartitionStore, prefix: str) -> list[tuple[Any, ...]]:
    keys = sorted(parts.files(prefix))
    con = lake_connection(parts)
    listing = ", ".join(f"'{parts.location(k)}'" for k in keys)
    got = con.sql(f"SELECT * FROM read_parquet([{listing}], hive_partitioning = false)"
                  ).fetchall()
    con.close()
    return sorted(got, key=repr)


def test_a_pass_compacts_a_partition_it_filled_with_small_files(tmp_path: Path) -> None:
    url = str(tmp_path / "lake")
    n = AUTO_SMALL_FILES + 1
    put_raw_files(url, n)
    runner = EtlRunner(settings_for(tmp_path, url))
    try:
        summary = runner.run_once()
        assert summary.runs == n and summary.quarantined == n
        assert summary.compacted == [f"{QUARANTINE}/{PARTITION}"]
        quarantine = f"{QUARANTINE}/{PARTITION}/"
        assert len(runner.lake.files(quarantine)) == 1
        got = rows(runner.lake, quarantine)
        assert sorted(r[1] for r in got) == sorted(f"{{not json {i}" for i in range(n))
        assert len(rows(runner.lake, f"md-transformed-logs/{PARTITION}/")) == n
        kinds = {r["run_id"].split("-")[0]: r["status"] for r in runner.ledger.recent_runs(50)}
        assert kinds == {"events": "succeeded", "aggregates": "succeeded",
                         COMPACT: "succeeded"}
        part = [p for p in runner.ledger.partitions(QUARANTINE) if p["partition"] == PARTITION]
        assert part[0]["files"] == 1 and part[0]["rows"] == n
    finally:
        runner.close()


def test_mad_etl_compact_merges_small_files_and_keeps_every_row(tmp_path: Path) -> None:
    url = str(tmp_path / "lake")
    put_raw_files(url, 5)
    runner = EtlRunner(settings_for(tmp_path, url))
    try:
        assert runner.run_once().compacted == []  # below the automatic threshold
        quarantine = f"{QUARANTINE}/{PARTITION}/"
        assert len(runner.lake.files(quarantine)) == 5
        before = rows(runner.lake, quarantine)
    finally:
        runner.close()
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"), "MAD_LAKE__URL": url}
    proc = subprocess.run([sys.executable, "-m", "mad.cli", "etl", "compact"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("1 partition compacted"), proc.stdout
    runner = EtlRunner(settings_for(tmp_path, url))
    try:
        assert len(runner.lake.files(quarantine)) == 1
        assert rows(runner.lake, quarantine) == before
        assert runner.compact() == []  # nothing left to do
    finally:
        runner.close()
    bad = subprocess.run([sys.executable, "-m", "mad.cli", "etl", "compact", "--dataset",
                          "md-nope"], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown dataset 'md-nope'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_large_file_is_split_into_files_of_about_the_target_size(tmp_path: Path) -> None:
    target = 2**20
    folder = tmp_path / "lake" / "md-transformed-logs" / "date=2026-11-01" / "hour=07"
    folder.mkdir(parents=True)
    big = folder / "part-big.parquet"
    duckdb.sql(f"COPY (SELECT i, md5(i::VARCHAR) || md5((i * 7)::VARCHAR) AS s "
               f"FROM range(120000) t(i)) TO '{big}' (FORMAT PARQUET, COMPRESSION SNAPPY)")
    assert big.stat().st_size > 3 * target
    before = duckdb.sql(f"SELECT * FROM '{big}'").fetchall()
    runner = EtlRunner(settings_for(tmp_path, str(tmp_path / "lake"),
                                    extra={"etl.target_file_bytes": target}))
    try:
        assert runner.compact() == ["md-transformed-logs/date=2026-11-01/hour=07"]
        files = sorted(folder.glob("*.parquet"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        assert len(files) >= 3
        assert all(f.stat().st_size <= 1.5 * target for f in files)
        listing = ", ".join(f"'{f}'" for f in files)
        assert duckdb.sql(f"SELECT * FROM read_parquet([{listing}])").fetchall() == before
        assert runner.compact() == []
        assert not any((tmp_path / "lake" / ".staging").glob("*"))
    finally:
        runner.close()


def test_compaction_on_an_s3_lake(tmp_path: Path, bucket_url: str, aws: AwsSettings) -> None:
    put_raw_files(bucket_url, 4, aws)
    runner = EtlRunner(settings_for(tmp_path, bucket_url, aws))
    try:
        runner.run_once()
        quarantine = f"{QUARANTINE}/{PARTITION}/"
        assert len(runner.lake.files(quarantine)) == 4
        before = rows(runner.lake, quarantine)
        assert runner.compact([QUARANTINE]) == [f"{QUARANTINE}/{PARTITION}"]
        assert len(runner.lake.files(quarantine)) == 1
        assert rows(runner.lake, quarantine) == before
        assert not runner.store.list(".staging/")
    finally:
        runner.close()


def test_a_staged_file_far_above_the_target_is_split_before_publishing(tmp_path: Path) -> None:
    from mad.etl.compact import split_large

    target = 256 * 1024
    staged = tmp_path / "out" / "events"
    big, small = staged / "date=2026-11-01" / "hour=07", staged / "date=2026-11-01" / "hour=08"
    big.mkdir(parents=True)
    small.mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT i, md5(i::VARCHAR) AS s FROM range(40000) t(i)) "
               f"TO '{big}/part-a.parquet' (FORMAT PARQUET, COMPRESSION SNAPPY)")
    duckdb.sql(f"COPY (SELECT 1 AS i, 'x' AS s) TO '{small}/part-b.parquet' (FORMAT PARQUET)")
    before = duckdb.sql(f"SELECT * FROM '{big}/part-a.parquet'").fetchall()
    engine = ENGINES.create("duckdb", {"temp_directory": str(tmp_path / "spill")})
    assert split_large(engine, staged, target) == 1
    pieces = sorted(big.glob("*.parquet"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert len(pieces) >= 3 and all(p.stat().st_size <= 1.5 * target for p in pieces)
    listing = ", ".join(f"'{p}'" for p in pieces)
    assert duckdb.sql(f"SELECT * FROM read_parquet([{listing}])").fetchall() == before
    assert [p.name for p in small.iterdir()] == ["part-b.parquet"]
    assert sorted(p.name for p in (staged / "date=2026-11-01").iterdir()) == ["hour=07",
                                                                                "hour=08"]
