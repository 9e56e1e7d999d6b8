"""The Spark engine on a real standalone cluster (a master and 2 workers on loopback, started
by `LocalCluster`): a pass run by two executors in their own JVMs ends with the counts and rows
the DuckDB engine gives on the same input, first on a local lake, then on an `s3a://` lake on
the moto server (with the hadoop-aws jars of `make spark-jars`; skipped without them).

The local lake is the one `test_spark_run` builds (a merge into existing partitions, a
compaction, an unreadable `.gz`); the S3 lake gets a few raw files of one hour.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mad import lake
from mad.config import AwsSettings, load_settings
from mad.etl.engines.spark.cluster import LocalCluster
from mad.etl.publish import PartitionStore
from mad.etl.runner import EtlRunner
from mad.stores import open_store
from tests.etl.helpers import float_blind, lake_connection, same
from tests.etl.test_spark_run import HOUR6, prepare, rows, settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JARS_DIR = Path(__file__).resolve().parents[2] / ".venv" / "spark-jars"
JARS = [str(JARS_DIR / "hadoop-aws-3.3.1.jar"), str(JARS_DIR / "aws-java-sdk-bundle-1.11.901.jar")]
HAVE_JARS = all(Path(j).is_file() for j in JARS)
EXECUTORS = 2
EXECUTOR_WAIT = 60.0  # seconds for both executors to register with the driver
COLUMNS = (
    (lake.transformed_dataset("log"), "event_id, event_time, latency_ms, date, hour"),
    (lake.QUARANTINE_DATASET, "reason, line, line_no, date, hour"),
    (lake.AGGREGATES_DATASET, '"window", window_start, service, series, "count", avg, p95'),
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    pytest.importorskip("pyspark", reason="pyspark is not installed")
    with LocalCluster(workers=EXECUTORS, cores=1, memory="1g") as running:
        yield running


@pytest.fixture(scope="module")
def s3(moto_url: str) -> AwsSettings:
    return AwsSettings(endpoint_url=moto_url, region="us-east-1",
                       access_key_id="testing", secret_access_key="testing")


@pytest.fixture(scope="module")
def spark(cluster: LocalCluster, s3: AwsSettings,
          monkeypatch_module: pytest.MonkeyPatch) -> Iterator[SparkSession]:
    """One session on the cluster for the module (a JVM takes its jars at start, so S3A is
    set up from the beginning when the jars are there)."""
    from mad.etl.engines.spark.session import spark_session

    monkeypatch_module.setenv("PYSPARK_PYTHON", sys.executable)
    session = spark_session(
        master=cluster.master_url, jars=JARS if HAVE_JARS else (),
        s3=s3 if HAVE_JARS else None, app_name="mad-cluster-tests",
        extra={"spark.executor.memory": "512m", "spark.cores.max": str(EXECUTORS),
               "spark.executor.cores": "1"})
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def executors(spark: SparkSession) -> int:
    """Executors registered with the driver (the driver's own entry not counted), waiting a
    bounded time for them to reach `EXECUTORS`."""
    deadline = time.monotonic() + EXECUTOR_WAIT
    while True:
        count = int(spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()) - 1
        if count >= EXECUTORS or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def spark_runner(spark: SparkSession, config: Any) -> EtlRunner:
    from mad.etl.engines.spark.engine import SparkEngine

    return EtlRunner(config, engine=SparkEngine(session=spark))


def test_a_pass_on_a_standalone_cluster_gives_the_duckdb_results(
    tmp_path: Path, cluster: LocalCluster, spark: SparkSession,
) -> None:
    assert spark.sparkContext.master == cluster.master_url
    assert executors(spark) == EXECUTORS
    on_spark, on_duckdb = tmp_path / "spark", tmp_path / "duckdb"
    prepare(on_spark)
    prepare(on_duckdb)

    runner = spark_runner(spark, settings(on_spark, "spark"))
    try:
        got = runner.run_once()
    finally:
        runner.close()
    runner = EtlRunner(settings(on_duckdb, "duckdb"))
    try:
        want = runner.run_once()
    finally:
        runner.close()
    assert want.runs == 1 and want.rows_out == 2 and want.unreadable == 1
    assert dataclasses.asdict(got) == dataclasses.asdict(want)
    for dataset, columns in COLUMNS:
        spark_rows = rows(on_spark, dataset, columns)
        assert spark_rows and same(spark_rows, rows(on_duckdb, dataset, columns)), dataset


def put_events(url: str, aws: AwsSettings | None, n: int) -> None:
    """`n` raw log files of ingest hour 06, each one event and one line that is not JSON."""
    store = open_store(url, aws, create=True)
    for i in range(n):
        event = {"event_id": f"ev-{i}", "timestamp": f"2026-11-01T06:{i:02d}:00Z",
                 "service": "auth", "event_type": "auth.token.issued", "kind": "log",
                 "metrics": {"latency_ms": 5.0 + i}}
        store.put(lake.raw_key("log", "auth", HOUR6, gzip=False),
                  (json.dumps(event) + "\n" + f"{{not json {i}\n").encode())


def lake_rows(parts: PartitionStore, dataset: str, columns: str) -> list[tuple[Any, ...]]:
    keys = sorted(parts.files(dataset + "/"))
    if not keys:
        return []
    con = lake_connection(parts)
    try:
        listing = ", ".join(f"'{parts.location(k)}'" for k in keys)
        found = con.sql(f"SELECT {columns} FROM read_parquet([{listing}], "
                        f"hive_partitioning = true, hive_types_autocast = false)").fetchall()
    finally:
        con.close()
    return sorted(found, key=float_blind)


@pytest.mark.skipif(not HAVE_JARS, reason=f"no hadoop-aws jars in {JARS_DIR} "
                    "(`make spark-jars` fetches them)")
def test_a_pass_over_an_s3a_lake_on_the_cluster_gives_the_duckdb_results(
    tmp_path: Path, spark: SparkSession, s3: AwsSettings, bucket_url: str,
) -> None:
    files = 5
    put_events(bucket_url, s3, files)
    put_events(str(tmp_path / "local" / "lake"), None, files)
    on_s3 = load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "s3" / "data"), "lake.url": bucket_url,
        "etl.engine.backend": "spark", "etl.engine.spark.master": "local[2]",
        "etl.engine.spark.jars": JARS, "aws.endpoint_url": s3.endpoint_url,
        "aws.region": s3.region, "aws.access_key_id": s3.access_key_id,
        "aws.secret_access_key": s3.secret_access_key})
    runner = spark_runner(spark, on_s3)
    try:
        got = runner.run_once()
        got_rows = {d: lake_rows(runner.lake, d, c) for d, c in COLUMNS}
    finally:
        runner.close()
    local = EtlRunner(settings(tmp_path / "local", "duckdb"))
    try:
        want = local.run_once()
        want_rows = {d: lake_rows(local.lake, d, c) for d, c in COLUMNS}
    finally:
        local.close()
    assert (want.rows_out, want.quarantined) == (files, files)
    assert dataclasses.asdict(got) == dataclasses.asdict(want)
    for dataset, _ in COLUMNS:
        assert got_rows[dataset] and same(got_rows[dataset], want_rows[dataset]), dataset
    assert executors(spark) == EXECUTORS
