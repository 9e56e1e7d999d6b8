"""`mad query --engine spark`: the same statements over the same views on Spark SQL
(`local[2]`) give the rows DuckDB gives."""

from __future__ import annotations

from typing import Any

import pytest

from mad.query.sql import check_sql, lake_folders, local_root, run_sql
from tests.etl.conftest_spark import spark_fixture
from tests.query.conftest import BuiltLake

pytestmark = [pytest.mark.spark, pytest.mark.slow]

spark = spark_fixture()

STATEMENTS = (
    "SELECT service, count(*) AS n FROM events_logs GROUP BY service ORDER BY service",
    "SELECT date, hour, count(*) AS n FROM events_metrics WHERE hour = '01' "
    "GROUP BY date, hour ORDER BY date, hour",
    'SELECT "window", count(*) AS n, round(avg(p95), 3) AS p95 FROM aggregates '
    'GROUP BY "window" ORDER BY "window"',
    "WITH e AS (SELECT service FROM events_apm) SELECT count(DISTINCT service) FROM e",
)


def test_spark_answers_as_duckdb_does(pipeline_lake: BuiltLake, spark: Any) -> None:
    from mad.etl.engines.spark.engine import SparkEngine

    engine = SparkEngine(session=spark)
    folders = {v: str(f) for v, f in lake_folders(local_root(pipeline_lake.settings)).items()}
    for sql in STATEMENTS:
        want = run_sql(pipeline_lake.settings, sql)
        columns, rows, cut = engine.select(check_sql(sql), folders, 1000)
        assert rows == want.rows and not cut, sql
        assert len(columns) == len(want.columns)
    _, rows, cut = engine.select("SELECT * FROM events_logs", folders, 3)
    assert len(rows) == 3 and cut
