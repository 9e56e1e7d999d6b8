"""The project's DuckDB -> Spark SQL translation (`to_spark_sql`), without a session.

Each rewrite `mad.etl.engines.spark.translate._rewrite` documents has its expected Spark SQL
here, written out whole; what has no faithful Spark form is refused; and every step of every
plan translates. That the translated SQL computes what DuckDB computes is shown by running it
(`tests/etl/test_spark_engine.py`, `tests/etl/test_events_parity.py`).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from mad.etl.engines.spark.translate import SparkDialectError, to_spark_sql
from mad.etl.plan import Plan
from mad.etl.transforms.aggregates import WINDOWS, aggregates_plan
from mad.etl.transforms.events import events_plan, partitions_plan
from mad.etl.transforms.quarantine import known_lines_plan

PLANS = [events_plan(), events_plan("log"), partitions_plan(), known_lines_plan(),
         events_plan("log", [("s3://b/part-x.jsonl.gz", datetime(2026, 11, 1, 6)),
                             ("/lake/it's.jsonl.gz", None)]),
         *(aggregates_plan(w) for w in WINDOWS)]

# (rewrite, DuckDB SQL, the Spark SQL `to_spark_sql` must give)
REWRITES = [
    ("json_valid", "SELECT json_valid(x) FROM t",
     "SELECT (NOT TRY_PARSE_JSON(x) IS NULL) FROM t"),
    ("quantile_cont", "SELECT quantile_cont(v, 0.95) FROM t",
     "SELECT PERCENTILE(v, 0.95) FROM t"),
    ("percentile_cont within group", "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) "
     "FROM t", "SELECT PERCENTILE(v, 0.5) FROM t"),
    ("percentile_cont descending", "SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY v DESC) "
     "FROM t", "SELECT PERCENTILE(v, 1 - 0.9) FROM t"),
    ("quantile_disc", "SELECT quantile_disc(v, 0.5) FROM t",
     "SELECT PERCENTILE_DISC(0.5) WITHIN GROUP (ORDER BY v NULLS LAST) FROM t"),
    ("percentile_disc within group", "SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY v) "
     "FROM t", "SELECT PERCENTILE_DISC(0.25) WITHIN GROUP (ORDER BY v NULLS LAST) FROM t"),
    ("median", "SELECT median(v) FROM t", "SELECT PERCENTILE(v, 0.5) FROM t"),
    ("rolling median", "SELECT median(v) OVER (PARTITION BY s ORDER BY ts ROWS BETWEEN 3 "
     "PRECEDING AND 1 PRECEDING) FROM t",
     "SELECT PERCENTILE(v, 0.5) OVER (PARTITION BY s ORDER BY ts NULLS LAST ROWS BETWEEN 3 "
     "PRECEDING AND 1 PRECEDING) FROM t"),
    ("epoch", "SELECT epoch(ts) FROM t", "SELECT (UNIX_MICROS(ts) / 1e6) FROM t"),
    ("extract epoch", "SELECT extract(epoch FROM ts) FROM t",
     "SELECT (UNIX_MICROS(ts) / 1e6) FROM t"),
    ("date_part epoch", "SELECT date_part('epoch', ts) FROM t",
     "SELECT (UNIX_MICROS(ts) / 1e6) FROM t"),
    ("date_part second", "SELECT date_part('second', ts) FROM t", "SELECT SECOND(ts) FROM t"),
    ("extract second", "SELECT extract(second FROM ts) FROM t", "SELECT SECOND(ts) FROM t"),
    ("to_timestamp", "SELECT to_timestamp(x) FROM t", "SELECT TIMESTAMP_SECONDS(x) FROM t"),
    ("epoch_ms", "SELECT epoch_ms(x) FROM t",
     "SELECT CAST(TIMESTAMP_MILLIS(x) AS TIMESTAMP_NTZ) FROM t"),
    ("time_bucket minutes", "SELECT time_bucket(INTERVAL '5 minutes', ts) FROM t",
     "SELECT TIMESTAMPADD(MICROSECOND, -(PMOD(UNIX_MICROS(ts) - 946857600000000, 300000000)), "
     "ts) FROM t"),
    ("time_bucket hour", "SELECT time_bucket(INTERVAL 1 HOUR, ts) FROM t",
     "SELECT TIMESTAMPADD(MICROSECOND, -(PMOD(UNIX_MICROS(ts) - 946857600000000, 3600000000)), "
     "ts) FROM t"),
    ("strptime", "SELECT strptime(s, '%Y-%m-%dT%H:%M:%S') FROM t",
     "SELECT CAST(TO_TIMESTAMP(s, 'yyyy-MM-dd\\'T\\'HH:mm:ss') AS TIMESTAMP_NTZ) FROM t"),
    ("try_strptime with a zone", "SELECT try_strptime(s, '%Y-%m-%d %H:%M:%S%z') FROM t",
     "SELECT TRY_TO_TIMESTAMP(s, 'yyyy-MM-dd HH:mm:ssXXX') FROM t"),
    ("strftime quoted letter", "SELECT strftime(ts, '%Y-%m-%dT%H') FROM t",
     "SELECT DATE_FORMAT(ts, 'yyyy-MM-dd\\'T\\'HH') FROM t"),
    ("strftime codes", "SELECT strftime(ts, '%d/%m/%Y %-H:%M %p %%') FROM t",
     "SELECT DATE_FORMAT(ts, 'dd/MM/yyyy H:mm a %') FROM t"),
    ("regexp_replace g with back-references", "SELECT regexp_replace(s, '(a)(b)', '\\2\\1', 'g') "
     "FROM t", "SELECT REGEXP_REPLACE(s, '(a)(b)', '$2$1') FROM t"),
    ("regexp_replace anchored without g", "SELECT regexp_replace(s, '^\\s+', '') FROM t",
     "SELECT REGEXP_REPLACE(s, '^\\\\s+', '') FROM t"),
    ("regexp_replace gi", "SELECT regexp_replace(s, 'x', 'y', 'gi') FROM t",
     "SELECT REGEXP_REPLACE(s, '(?i)x', 'y') FROM t"),
    ("regexp_replace literal dollar", "SELECT regexp_replace(s, 'a', '$b', 'g') FROM t",
     "SELECT REGEXP_REPLACE(s, 'a', '\\\\$b') FROM t"),
    ("regexp_matches i", "SELECT regexp_matches(s, 'x', 'i') FROM t",
     "SELECT s RLIKE '(?i)x' FROM t"),
    ("dayofweek", "SELECT dayofweek(ts) FROM t", "SELECT (DAYOFWEEK(ts) - 1) FROM t"),
    ("isodow", "SELECT isodow(ts) FROM t", "SELECT (WEEKDAY(ts) + 1) FROM t"),
    ("list index", "SELECT string_split(s, ',')[2] FROM t",
     "SELECT TRY_ELEMENT_AT(SPLIT(s, CONCAT('\\\\Q', ',', '\\\\E')), 2) FROM t"),
    ("list index from the end", "SELECT l[-1] FROM t", "SELECT TRY_ELEMENT_AT(l, -1) FROM t"),
    ("list index by column", "SELECT l[i] FROM t", "SELECT TRY_ELEMENT_AT(l, i) FROM t"),
    ("list_extract", "SELECT list_extract(l, 1) FROM t", "SELECT TRY_ELEMENT_AT(l, 1) FROM t"),
    ("types", "SELECT CAST(x AS HUGEINT), CAST(x AS UBIGINT), CAST(x AS UINTEGER), "
     "CAST(x AS USMALLINT), CAST(x AS UTINYINT), CAST(x AS TIMESTAMP_MS) FROM t",
     "SELECT CAST(x AS DECIMAL(38, 0)), CAST(x AS DECIMAL(20, 0)), CAST(x AS BIGINT), "
     "CAST(x AS INT), CAST(x AS SMALLINT), CAST(x AS TIMESTAMP_NTZ) FROM t"),
    ("json_transform", "SELECT json_transform(j, '{\"a\": \"VARCHAR\", \"b\": {\"c\": "
     "\"BIGINT\", \"d\": \"DOUBLE\"}, \"e\": \"BOOLEAN\"}') FROM t",
     "SELECT FROM_JSON(j, '`a` STRING, `b` STRUCT<`c`: BIGINT, `d`: DOUBLE>, `e` BOOLEAN') "
     "FROM t"),
    ("json_merge_patch", "SELECT json_merge_patch(j, '{\"a\": null, \"b\": {\"c\": null}}') "
     "FROM t",
     "SELECT TO_JSON(MAP_FILTER(TRANSFORM_VALUES(FROM_JSON(j, 'MAP<STRING, VARIANT>'), "
     "(k0, v0) -> CASE k0 WHEN 'b' THEN TO_VARIANT_OBJECT(MAP_FILTER(TRY_VARIANT_GET(v0, '$', "
     "'MAP<STRING, VARIANT>'), (k1, v1) -> NOT k1 IN ('c'))) ELSE v0 END), "
     "(k0, v0) -> NOT k0 IN ('a'))) FROM t"),
]


@pytest.mark.parametrize("sql, spark", [(sql, spark) for _, sql, spark in REWRITES],
                         ids=[name for name, _, _ in REWRITES])
def test_each_documented_rewrite_gives_its_spark_sql(sql: str, spark: str) -> None:
    assert to_spark_sql(sql) == spark


@pytest.mark.parametrize("sql, reason", [
    ("SELECT regexp_replace(s, 'a', 'b') FROM t", "replaces only the first match"),
    ("SELECT regexp_replace(s, 'a', 'b', 'gx') FROM t", "option"),
    ("SELECT time_bucket(INTERVAL 1 MONTH, ts) FROM t", "time_bucket"),
    ("SELECT time_bucket(INTERVAL 5 MINUTE, ts, TIMESTAMP '2000-01-01') FROM t", "origin"),
    ("SELECT strftime(ts, fmt) FROM t", "literal format"),
    ("SELECT strftime(ts, '%Q') FROM t", "%Q"),
    ("SELECT json_transform(j, spec) FROM t", "literal"),
    ("SELECT json_transform(j, '{\"a\": \"DATE\"}') FROM t", "not translated"),
    ("SELECT json_merge_patch(j, '{\"a\": 1}') FROM t", "deletes keys"),
    ("SELECT 1; SELECT 2", "exactly one SELECT"),
    ("SELECT FROM WHERE (", "cannot parse"),
])
def test_untranslatable_sql_is_refused_with_its_reason(sql: str, reason: str) -> None:
    with pytest.raises(SparkDialectError, match=reason):
        to_spark_sql(sql)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.name)
def test_every_step_of_every_plan_translates(plan: Plan) -> None:
    for step in plan.steps:
        out = to_spark_sql(step.sql)
        assert out.upper().startswith(("SELECT", "WITH")), step.name
