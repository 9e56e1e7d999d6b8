"""A hand-written PySpark ETL job, the yardstick for our Spark engine in `bench_scale.py`.

The steps of our ETL pass, written the way a PySpark job usually is (DataFrame API, Spark's
default SQL settings, session time zone UTC): read the raw lake's gzipped NDJSON, parse each
line with `from_json` (every leaf as text, cast afterwards, so one odd value does not null
the record), keep the events of the contract (a JSON-string event_id, a timestamp given as
ISO-8601 with an optional offset or as epoch seconds/milliseconds within 2000-2100, a known
event type of its kind from a known service, or the type's only service when `service` is
left out, nested values that are objects, numeric metrics, numbers sent as strings
included), dedup by event_id, flatten the envelope, the common nested fields and one column
per metric series, write Parquet partitioned by kind/date/hour, then per-service per-minute
aggregates (count, avg, exact p95 of each series, plus an `events` count series) written as
Parquet partitioned by date. Not done here: quarantine output with reasons, late events,
merges with existing partitions (and dedup against them), the `extra` column of unknown
fields, staging and swap, the 5m/1h windows and the outlier scores our pass computes.

    .venv/bin/python benchmarks/peer_spark_etl.py --lake DIR --out DIR [--master URL]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

SERIES = (
    "cpu_pct", "load_avg", "memory_mb", "heap_used_pct", "gc_pause_ms", "gc_count",
    "active_threads", "queue_depth", "duration_ms", "latency_ms", "response_bytes",
    "upstream_ms", "active_connections", "requests_per_s", "db_time_ms", "active_sessions",
    "token_cache_hit_pct", "page_count", "rows", "db_connections_active", "db_pool_wait_ms",
    "amount", "batch_size", "fraud_check_ms", "tps", "amount_per_min", "fraud_score",
    "tx_per_hour", "feature_count", "model_latency_ms", "alert_rate_pct", "cost",
    "consumer_lag_s", "provider_error_pct", "send_rate",
)
MS_FROM = 1e10  # an epoch number this large or larger is milliseconds, else seconds
EPOCH_MAX = 1e15  # larger than any epoch milliseconds of 2000-2100
TIME_FROM, TIME_TO = "2000-01-01", "2100-01-01"  # accepted event times, UTC


def event_schema() -> str:
    """The parsed event, as a DDL string for `from_json`: the top-level values as text (a
    number or a nested object as its JSON text), cast or parsed afterwards, since `from_json`
    in PERMISSIVE mode nulls the whole record when one value does not fit its type."""
    return (
        "event_id STRING, timestamp STRING, service STRING, event_type STRING, kind STRING, "
        "level STRING, host STRING, message STRING, "
        "trace STRING, context STRING, metrics STRING, error STRING"
    )


NESTED_SCHEMAS = {
    "trace": "STRUCT<trace_id: STRING, span_id: STRING>",
    "context": "STRUCT<user_id: STRING, request_id: STRING, session_id: STRING, "
               "client_ip: STRING, geo: STRUCT<country: STRING, city: STRING>, "
               "status_code: STRING>",
    "metrics": "MAP<STRING, STRING>",
    "error": "STRUCT<code: STRING, type: STRING, message: STRING>",
}


def contract(spark: SparkSession) -> DataFrame:
    """The event contract as a small reference table: (event_type, kind, service,
    default_service), one row per event type and service that emits it; `default_service`
    is the service of a type only one service emits (events of it may leave `service` out)."""
    from mad.catalog import EVENT_TYPES

    rows = [(t.name, t.kind, s, t.services[0] if len(t.services) == 1 else None)
            for t in EVENT_TYPES for s in t.services]
    return spark.createDataFrame(
        rows, "event_type STRING, kind STRING, service STRING, default_service STRING")


def event_time(raw: Column) -> Column:
    """UTC event time of the `timestamp` text: an epoch number (seconds, or milliseconds from
    1e10) or ISO-8601 with an optional offset; NULL when neither, or outside 2000-2100."""
    from pyspark.sql import functions as F

    number = raw.try_cast("double")
    from_epoch = (F.when(F.abs(number) >= EPOCH_MAX, None)
                  .when(F.abs(number) >= MS_FROM, F.timestamp_millis(F.round(number).cast("long")))
                  .otherwise(F.timestamp_millis(F.round(number * 1000).cast("long"))))
    iso = F.when(F.length(raw).between(10, 40), F.try_to_timestamp(raw))
    parsed = F.when(number.isNotNull(), from_epoch).otherwise(iso)
    return F.when((parsed >= F.lit(TIME_FROM).cast("timestamp"))
                  & (parsed < F.lit(TIME_TO).cast("timestamp")), parsed)


def events(spark: SparkSession, lake: str) -> DataFrame:
    """Valid, deduplicated, flattened events of every `*.jsonl.gz` under `lake`."""
    from pyspark.sql import functions as F

    raw = (spark.read.option("recursiveFileLookup", "true")
           .option("pathGlobFilter", "*.jsonl.gz").text(lake))
    parsed = raw.select(
        F.from_json("value", event_schema()).alias("e"),
        # from_json reads a number as its text: the id must be a JSON string in the line
        F.col("value").rlike(r'"event_id"\s*:\s*"').alias("id_is_string"),
    ).select("e.*", "id_is_string")
    well_formed = F.col("id_is_string") & F.length("event_id").between(1, 128)
    for name in NESTED_SCHEMAS:  # each nested value absent or an object
        well_formed &= F.col(name).isNull() | F.col(name).startswith("{")
    parsed = parsed.withColumns({"well_formed": well_formed, **{
        name: F.from_json(name, schema) for name, schema in NESTED_SCHEMAS.items()}})
    numbers_ok = ~F.exists(F.map_values("metrics"),
                           lambda v: v.isNotNull() & v.try_cast("double").isNull())
    checked = (parsed
               .withColumn("event_time", event_time(F.col("timestamp")))
               .where(F.col("well_formed") & F.coalesce(numbers_ok, F.lit(True))
                      & F.col("event_time").isNotNull())
               .drop("well_formed", "id_is_string")
               .withColumn("metrics", F.transform_values(
                   "metrics", lambda _k, v: v.try_cast("double"))))
    # known event type of its kind, emitted by its service (or by the type's only service)
    ref = F.broadcast(contract(spark).alias("c"))
    e = checked.alias("e")
    valid = e.join(ref, (F.col("e.event_type") == F.col("c.event_type"))
                   & (F.col("e.kind") == F.col("c.kind"))
                   & (F.coalesce(F.col("e.service"), F.col("c.default_service"))
                      == F.col("c.service"))).select(
        *[F.col(f"e.{c}") for c in checked.columns if c != "service"],
        F.col("c.service").alias("service"))
    unique = valid.dropDuplicates(["event_id"])
    return unique.select(
        "event_id", "event_time", "service", "event_type", "kind", "level", "host", "message",
        F.col("trace.trace_id").alias("trace_id"), F.col("trace.span_id").alias("span_id"),
        F.col("context.user_id").alias("user_id"),
        F.col("context.request_id").alias("request_id"),
        F.col("context.session_id").alias("session_id"),
        F.col("context.client_ip").alias("client_ip"),
        F.col("context.geo.country").alias("country"), F.col("context.geo.city").alias("city"),
        F.col("context.status_code").try_cast("bigint").alias("status_code"),
        F.col("error.code").alias("error_code"), F.col("error.type").alias("error_type"),
        F.col("error.message").alias("error_message"),
        *[F.col("metrics").getItem(s).alias(s) for s in SERIES],
        F.date_format("event_time", "yyyy-MM-dd").alias("date"),
        F.date_format("event_time", "HH").alias("hour"),
    )


def minute_aggregates(flat: DataFrame) -> DataFrame:
    """One row per minute x service x series: count, avg, p95 (and `events`, a count)."""
    from pyspark.sql import functions as F

    minute = flat.withColumn("window_start", F.date_trunc("minute", "event_time"))
    values = minute.select(
        "window_start", "service",
        F.explode(F.map_from_arrays(F.array(*[F.lit(s) for s in SERIES]),
                                    F.array(*[F.col(s) for s in SERIES]))
                  ).alias("series", "value"),
    ).where(F.col("value").isNotNull())
    stats = values.groupBy("window_start", "service", "series").agg(
        F.count("value").alias("count"), F.avg("value").alias("avg"),
        F.percentile("value", 0.95).alias("p95"))
    counts = (minute.groupBy("window_start", "service").count()
              .select("window_start", "service", F.lit("events").alias("series"), "count",
                      F.col("count").cast("double").alias("avg"),
                      F.col("count").cast("double").alias("p95")))
    return (stats.unionByName(counts)
            .withColumn("date", F.date_format("window_start", "yyyy-MM-dd")))


def run(spark: SparkSession, lake: str, out: str) -> None:
    """The whole job: events to `out`/events, aggregates to `out`/aggregates_1m."""
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # date/hour partitions in UTC
    flat = events(spark, lake).persist()
    try:
        (flat.write.mode("overwrite").partitionBy("kind", "date", "hour")
         .parquet(f"{out}/events"))
        (minute_aggregates(flat).write.mode("overwrite").partitionBy("date")
         .parquet(f"{out}/aggregates_1m"))
    finally:
        flat.unpersist()


def main() -> None:
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args()
    start = time.perf_counter()
    spark = SparkSession.builder.master(args.master).appName("peer-spark-etl").getOrCreate()
    try:
        began = time.perf_counter()
        run(spark, args.lake, args.out)
        done = time.perf_counter()
    finally:
        spark.stop()
    print(json.dumps({"session_s": began - start, "pass_s": done - began}))


if __name__ == "__main__":
    main()
