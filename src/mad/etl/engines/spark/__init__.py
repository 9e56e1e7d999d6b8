"""The Spark engine, `spark`: its options and its registration, nothing heavy.

    translate.py  DuckDB SQL -> Spark SQL (`to_spark_sql`, sqlglot plus its fixes)
    session.py    the SparkSession with the settings the lake relies on
    paths.py      lake paths as Spark reads them (`s3a://`, a raw file's ingest hour)
    engine.py     `SparkEngine`: plans, row counts and rewrites on a session
    cluster.py    `LocalCluster`: a standalone master and workers on loopback

`mad.config` checks `etl.engine` against the registry on every settings load, which imports
this package: PySpark and sqlglot are imported only when an engine is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, StringConstraints

from mad.errors import ConfigError
from mad.etl.engines.base import ENGINES
from mad.etl.engines.spark.setup_check import check as setup_check  # noqa: F401  (registers `mad doctor`'s check)
from mad.registry import Options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from mad.config import AwsSettings
    from mad.etl.engines.base import Engine


# Spark's master URLs: local[N] / local[*] / local[N,F], yarn, spark://h:p[,h:p], k8s://..
MASTER = (r"^(local(\[(\*|[0-9]+)(, ?[0-9]+)?\])?|yarn|(spark|k8s|mesos)://[^\s,]+"
          r"(,[^\s,]+)*)$")
# `spark.jars` is one comma-separated string: a comma in a path would make two jars of it
JAR = r"^[^,\x00-\x1f\x7f]+$"


class SparkOptions(Options):
    """`etl.engine.spark.*`: where Spark runs and the jars it loads."""

    master: str = Field("local[*]", pattern=MASTER,
                        description="local[N], local[*] or a cluster URL")
    jars: list[Annotated[str, StringConstraints(pattern=JAR)]] = Field(
        default_factory=list, description="e.g. the hadoop-aws jars for an S3 lake "
        "(`make spark-jars`); paths without commas")


@ENGINES.register("spark", SparkOptions)
def spark_engine(master: str, jars: Sequence[str], s3: AwsSettings | None = None,
                 session: SparkSession | None = None) -> Engine:
    """A `SparkEngine` on `session`, or on one started from `master`, `jars` and `s3`."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError("etl.engine spark needs PySpark, which is not installed here: run "
                          "`make spark` (or `.venv/bin/pip install -e '.[spark]'`)")
    from mad.etl.engines.spark.engine import SparkEngine

    return SparkEngine(master=master, jars=jars, s3=s3, session=session)
