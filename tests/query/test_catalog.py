"""`mad lake catalog` against the moto server's Glue API: the database, one table per dataset
(columns from the Parquet files, partition keys from the Hive layout, the S3 location) and
every partition, read back from Glue; a second run adds nothing; the DDL is printed."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from mad import lake
from mad.config import AwsSettings
from mad.stores import open_store


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def events() -> pa.Table:
    return pa.table({"event_id": ["a", "b"], "event_time": [datetime(2026, 11, 1, 0, 5)] * 2,
                     "service": ["auth", "gateway"], "duration_ms": [1.5, 2.5],
                     "status_code": pa.array([200, 500], pa.int64())})


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mad.cli", "lake", "catalog", *args],
                          env={"PATH": "/usr/bin:/bin", **env}, text=True,
                          capture_output=True, timeout=300)


def test_glue_holds_the_lakes_tables_and_partitions(tmp_path: Path, aws: AwsSettings,
                                                    bucket_url: str) -> None:
    store = open_store(bucket_url, aws, create=True)
    logs = lake.transformed_dataset("log")
    for hour in ("00", "01", "02"):
        store.put(f"{logs}/date=2026-11-01/hour={hour}/part-0.parquet", parquet(events()))
    aggregates = pa.table({"window_start": [datetime(2026, 11, 1)], "service": ["auth"],
                           "series": ["latency_ms"], "count": pa.array([3], pa.int64()),
                           "p95": [9.5]})
    store.put(f"{lake.AGGREGATES_DATASET}/window=1m/date=2026-11-01/part-0.parquet",
              parquet(aggregates))
    env = {"MAD_DATA_DIR": str(tmp_path / "data"), "MAD_LAKE__URL": bucket_url,
           "MAD_AWS__ENDPOINT_URL": aws.endpoint_url or "", "MAD_AWS__REGION": aws.region,
           "MAD_AWS__ACCESS_KEY_ID": "testing", "MAD_AWS__SECRET_ACCESS_KEY": "testing"}
    done = run(env, "--database", "bank_lake")
    assert done.returncode == 0, done.stderr
    root = bucket_url.rstrip("/")
    assert ("CREATE EXTERNAL TABLE IF NOT EXISTS bank_lake.events_logs (" in done.stdout
            and f"LOCATION '{root}/{logs}/';" in done.stdout
            and "PARTITIONED BY (`date` string, `hour` string)" in done.stdout)
    assert "bank_lake.events_logs: 3 partitions added" in done.stderr

    glue = boto3.client("glue", endpoint_url=aws.endpoint_url, region_name=aws.region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="bank_lake")["TableList"]}
    assert set(tables) == {"events_logs", "aggregates"}
    ev = tables["events_logs"]
    assert [(c["Name"], c["Type"]) for c in ev["StorageDescriptor"]["Columns"]] == [
        ("event_id", "string"), ("event_time", "timestamp"), ("service", "string"),
        ("duration_ms", "double"), ("status_code", "bigint")]
    assert [k["Name"] for k in ev["PartitionKeys"]] == ["date", "hour"]
    assert ev["StorageDescriptor"]["Location"] == f"{root}/{logs}/"
    parts = glue.get_partitions(DatabaseName="bank_lake", TableName="events_logs")
    assert sorted(p["Values"] for p in parts["Partitions"]) == [
        ["2026-11-01", "00"], ["2026-11-01", "01"], ["2026-11-01", "02"]]
    agg = glue.get_partitions(DatabaseName="bank_lake", TableName="aggregates")["Partitions"]
    assert [p["Values"] for p in agg] == [["1m", "2026-11-01"]]
    assert agg[0]["StorageDescriptor"]["Location"] == (
        f"{root}/{lake.AGGREGATES_DATASET}/window=1m/date=2026-11-01/")

    store.put(f"{logs}/date=2026-11-01/hour=03/part-0.parquet", parquet(events()))
    again = run(env, "--database", "bank_lake")  # updates the tables, adds only the new hour
    assert again.returncode == 0, again.stderr
    assert "bank_lake.events_logs: 1 partitions added" in again.stderr
    assert "bank_lake.aggregates: 0 partitions added" in again.stderr


def test_a_local_lake_gets_the_ddl_and_a_clear_word_on_glue(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "lake"), create=True)
    store.put(f"{lake.ANOMALIES_DATASET}/date=2026-11-01/part-1m.parquet",
              parquet(pa.table({"service": ["auth"], "score": [0.9]})))
    env = {"MAD_DATA_DIR": str(tmp_path / "data"), "MAD_LAKE__URL": str(tmp_path / "lake")}
    ddl = run(env, "--ddl")
    assert ddl.returncode == 0 and "CREATE EXTERNAL TABLE IF NOT EXISTS mad.anomalies (" in (
        ddl.stdout) and "PARTITIONED BY (`date` string)" in ddl.stdout
    glue = run(env)
    assert glue.returncode == 2 and "Glue catalogs S3 lakes" in glue.stderr
    bad = run(env, "--ddl", "--database", "x; DROP")
    assert bad.returncode != 0 and "database name" in bad.stderr
