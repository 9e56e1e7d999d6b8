"""Build the `SparkSession` the Spark engine runs on, with the settings the lake relies on.

`spark_session()` starts (or reuses) a session with:
- UTC as the session time zone, so `TIMESTAMP` values and `date_format` agree with DuckDB;
- Parquet written snappy with `TIMESTAMP_MICROS` (Spark writes legacy INT96 otherwise);
- dynamic partition overwrite, so a run replaces only the partitions it writes;
- no constraint propagation: the optimizer would otherwise derive constraints for every alias
  of every wide projection (the events plan's `fields` step has ~60 columns built from a few),
  a set that grows combinatorially and ran the driver out of heap while planning `checked`;
  it only adds inferred `IS NOT NULL` filters, which these plans do not need;
- JSON objects that repeat a key parse as they do in DuckDB: Spark's variant parser refuses
  them (`json_valid` would say `invalid_json`) and `from_json` to a MAP fails the whole job
  on one, so repeats are allowed (the last value wins in a MAP) and the events plan's
  `duplicate_key` rule decides what such a line is;
- no web UI, and the driver bound to loopback unless `SPARK_LOCAL_IP` is already set;
- S3A settings for an S3 endpoint (AWS, MinIO, LocalStack, moto) when `s3` is given and the
  hadoop-aws / AWS SDK jars are passed in `jars` (`spark.jars.packages` needs Maven).

PySpark is imported inside the functions, so importing `mad.etl.engines` stays light.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mad.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mad.config import AwsSettings

DEFAULT_APP_NAME = "mad-etl"
DRIVER_MEMORY = "4g"  # local mode: driver and executors share one JVM; 24 GiB machine, 2 cores

# The settings every session gets. Numbers are plain integers where Hadoop reads them with
# `getLong` (the bundled core-default.xml says "60s", which hadoop-aws 3.3 cannot parse).
BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "snappy",
    "spark.driver.memory": DRIVER_MEMORY,
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.sql.parquet.writeLegacyFormat": "false",
    "spark.sql.constraintPropagation.enabled": "false",
    "spark.sql.variant.allowDuplicateKeys": "true",
    "spark.sql.mapKeyDedupPolicy": "LAST_WIN",
}

# Fixed when the JVM starts: setting them again on a running session is an error.
STATIC_SQL_CONF = frozenset({"spark.sql.warehouse.dir"})

S3A_NUMERIC_CONF: dict[str, str] = {
    "spark.hadoop.fs.s3a.threads.keepalivetime": "60",
    "spark.hadoop.fs.s3a.connection.establish.timeout": "30000",
    "spark.hadoop.fs.s3a.connection.timeout": "200000",
    "spark.hadoop.fs.s3a.multipart.purge.age": "86400",
    "spark.hadoop.fs.s3a.connection.ttl": "300000",
}


def s3a_conf(s3: AwsSettings) -> dict[str, str]:
    """The `spark.hadoop.fs.s3a.*` settings for the endpoint and credentials in `s3`."""
    conf = dict(S3A_NUMERIC_CONF)
    conf["spark.hadoop.fs.s3a.impl"] = "org.apache.hadoop.fs.s3a.S3AFileSystem"
    conf["spark.hadoop.fs.s3a.endpoint.region"] = s3.region
    if s3.endpoint_url:
        endpoint = s3.endpoint_url.rstrip("/")
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            endpoint.startswith("https://")
        ).lower()
    if s3.access_key_id and s3.secret_access_key:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
        conf["spark.hadoop.fs.s3a.access.key"] = s3.access_key_id
        conf["spark.hadoop.fs.s3a.secret.key"] = s3.secret_access_key
    return conf


def session_conf(
    jars: Sequence[str] = (),
    s3: AwsSettings | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every setting `spark_session` applies, as a plain dict (also handy to print)."""
    conf = dict(BASE_CONF)
    # No tables are ever saved; without this Spark creates ./spark-warehouse wherever it runs.
    conf["spark.sql.warehouse.dir"] = os.path.join(tempfile.gettempdir(), "mad-spark-warehouse")
    missing = [j for j in jars if "://" not in j and not Path(j).is_file()]
    if missing:
        raise ConfigError(f"spark jars not found: {', '.join(missing)}")
    if jars:
        conf["spark.jars"] = ",".join(jars)
    if s3 is not None:
        if not any("hadoop-aws" in Path(j).name for j in jars):
            raise ConfigError(
                "S3 access from Spark needs the hadoop-aws and aws-java-sdk-bundle jars in "
                "'jars' (see `make spark-jars`)"
            )
        conf.update(s3a_conf(s3))
    conf.update(extra or {})
    return conf


def spark_session(
    master: str = "local[2]",
    jars: Sequence[str] = (),
    s3: AwsSettings | None = None,
    app_name: str = DEFAULT_APP_NAME,
    extra: Mapping[str, str] | None = None,
) -> SparkSession:
    """Start a SparkSession on `master` (or return the one already running in this process,
    with the SQL settings re-applied).

    `jars` are local jar paths for `spark.jars`; `s3` configures S3A for `s3a://` (the engine
    maps `s3://` URLs to it) and needs the hadoop-aws jars in `jars`; `extra` overrides any
    setting. A JVM takes its jars and memory at start: a second session in the same process
    shares the first one's.

    The process keeps its own Ctrl-C handling: PySpark replaces the SIGINT handler with one
    that cancels every job and raises KeyboardInterrupt, which under `mad up` (whose children
    stop when the supervisor tells them, not on the terminal's SIGINT) cut a pass short and
    printed tracebacks; the previous handler is put back.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None

    conf = session_conf(jars, s3, extra)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if main and previous is not None:
        signal.signal(signal.SIGINT, previous)
    for key, value in conf.items():
        if key.startswith("spark.sql.") and key not in STATIC_SQL_CONF:
            spark.conf.set(key, value)
    spark.sparkContext.setLogLevel("WARN")
    return spark
