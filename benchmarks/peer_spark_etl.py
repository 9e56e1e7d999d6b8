"""A hand-written PySpark ETL job, the yardstick for our Spark engine in `bench_scale.py`.

The steps of our ETL pass, written the way a PySpark job usually is (DataFrame API, Spark's
default SQL settings): read the raw lake's gzipped NDJSON, parse each line with `from_json`,
drop malformed lines (no JSON, no event_id, no parseable timestamp, unknown kind), dedup by
event_id, flatten the envelope, the common nested fields and one column per metric series,
write Parquet partitioned by kind/date/hour, then per-service per-minute aggregates (count,
avg, exact p95 of each series, plus an `events` count series) written as Parquet partitioned
by date. Not done here: quarantine output, late events, merges with existing partitions,
the 5m/1h windows and the outlier scores our pass computes.

    .venv/bin/python benchmarks/peer_spark_etl.py --lake DIR --out DIR [--master URL]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SERIES = (
    "cpu_pct", "load_avg", "memory_mb", "heap_used_pct", "gc_pause_ms", "gc_count",
    "active_threads", "queue_depth", "duration_ms", "latency_ms", "response_bytes",
    "upstream_ms", "active_connections", "requests_per_s", "db_time_ms", "active_sessions",
    "token_cache_hit_pct", "page_count", "rows", "db_connections_active", "db_pool_wait_ms",
    "amount", "batch_size", "fraud_check_ms", "tps", "amount_per_min", "fraud_score",
    "tx_per_hour", "feature_count", "model_latency_ms", "alert_rate_pct", "cost",
    "consumer_lag_s", "provider_error_pct", "send_rate",
)
KINDS = ("log", "metric", "apm")


def event_schema() -> str:
    """The parsed event, as a DDL string for `from_json`."""
    return (
        "event_id STRING, timestamp STRING, service STRING, event_type STRING, kind STRING, "
        "level STRING, host STRING, message STRING, "
        "trace STRUCT<trace_id: STRING, span_id: STRING>, "
        "context STRUCT<user_id: STRING, request_id: STRING, session_id: STRING, "
        "client_ip: STRING, geo: STRUCT<country: STRING, city: STRING>, "
        "status_code: BIGINT>, "
        "metrics MAP<STRING, DOUBLE>, "
        "error STRUCT<code: STRING, type: STRING, message: STRING>"
    )


def events(spark: SparkSession, lake: str) -> DataFrame:
    """Valid, deduplicated, flattened events of every `*.jsonl.gz` under `lake`."""
    from pyspark.sql import functions as F

    raw = (spark.read.option("recursiveFileLookup", "true")
           .option("pathGlobFilter", "*.jsonl.gz").text(lake))
    parsed = raw.select(F.from_json("value", event_schema()).alias("e")).select("e.*")
    valid = (parsed
             .withColumn("event_time", F.try_to_timestamp(F.col("timestamp")))
             .where(F.col("event_id").isNotNull() & F.col("event_time").isNotNull()
                    & F.col("service").isNotNull() & F.col("kind").isin(*KINDS)))
    unique = valid.dropDuplicates(["event_id"])
    return unique.select(
        "event_id", "event_time", "service", "event_type", "kind", "level", "host", "message",
        F.col("trace.trace_id").alias("trace_id"), F.col("trace.span_id").alias("span_id"),
        F.col("context.user_id").alias("user_id"),
        F.col("context.request_id").alias("request_id"),
        F.col("context.session_id").alias("session_id"),
        F.col("context.client_ip").alias("client_ip"),
        F.col("context.geo.country").alias("country"), F.col("context.geo.city").alias("city"),
        F.col("context.status_code").alias("status_code"),
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
