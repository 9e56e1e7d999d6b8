"""The Spark engine: runs a `Plan` with PySpark and writes its outputs as partitioned Parquet.

Each step's DuckDB SQL runs as its Spark translation (`mad.etl.engines.spark.translate`);
a step that cannot be translated fails the plan before any input is read.

Inputs are bound as temporary views:
- `raw_lines(line STRING, source_file STRING, line_no BIGINT, ingest_hour TIMESTAMP_NTZ)`:
  each raw file is read whole (`wholetext`, gzip by extension) and split on `\\n`, so
  `line_no` is the 1-based physical line number in its file whatever the partitioning; a
  trailing `\\r` is dropped, so is the empty remainder after a final newline; blank lines are
  kept as `''`; bytes that are not UTF-8 become U+FFFD. `source_file` is the path as given;
  `ingest_hour` comes from the file's `year=/month=/day=/hour=` folders (`mad.lake.parse_key`).
- every dataset in `plan.datasets`: its Parquet files, with the `key=value` folders of their
  paths as string columns, aligned by name on the plan's `schema_<name>` step (a typed,
  empty SELECT) when it has one; no files (or the dataset not given) binds that empty table.

Raw `.gz` files are checked whole before a run (`unreadable`) on the executors: Spark reads
each as one binary row and `mad.etl.engines.rawcheck` inflates it there, so a cut or corrupt
file is named instead of failing (or, with `ignoreCorruptFiles`, half-reading) the run.

Row counts read only the files' footers (a count over no columns); a rewrite reads the files
in order (each row's file and `_metadata.row_index`), range-partitions them into as many
tasks as target-sized files and writes each task's rows in that order, so compaction keeps
the rows' order and runs on the executors.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mad.errors import ConfigError
from mad.etl.engines import rawcheck
from mad.etl.engines.spark.paths import ingest_hour, partition_values, spark_path
from mad.etl.engines.spark.translate import to_spark_sql
from mad.etl.plan import Plan

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mad.config import AwsSettings

RAW_LINES = "raw_lines"
RAW_LINES_DDL = "line STRING, source_file STRING, line_no BIGINT, ingest_hour TIMESTAMP_NTZ"


class SparkEngine:
    """Runs plans on a SparkSession: a given one, or one started from `master` / `jars` /
    `s3` (see `mad.etl.engines.spark.session.spark_session`) and stopped by `close()`."""

    name = "spark"

    def __init__(
        self,
        master: str = "local[2]",
        jars: Sequence[str] = (),
        s3: AwsSettings | None = None,
        session: SparkSession | None = None,
    ) -> None:
        if session is None:
            from mad.etl.engines.spark.session import spark_session

            session = spark_session(master=master, jars=jars, s3=s3)
            self._owned = True
        else:
            self._owned = False
        self.spark: SparkSession = session

    # -- the Protocol ----------------------------------------------------------------------

    def execute(
        self,
        plan: Plan,
        raw_files: Sequence[str],
        datasets: Mapping[str, Sequence[str]],
        out_dir: str,
    ) -> dict[str, int]:
        """Bind the inputs, run every step, write the outputs; see `Engine.execute`."""
        with self._views(plan, raw_files, datasets) as views:
            counts: dict[str, int] = {}
            for name in plan.outputs:
                step = plan.step(name)
                counts[name] = self.write(views[name], f"{out_dir.rstrip('/')}/{name}",
                                          step.partition_by)
            for step in plan.steps:
                if step.name.startswith("count_") and step.name not in counts:
                    counts[step.name] = int(views[step.name].count())
            return counts

    def query(
        self,
        plan: Plan,
        raw_files: Sequence[str],
        datasets: Mapping[str, Sequence[str]],
        step: str,
    ) -> list[dict[str, Any]]:
        """The rows of `step`, collected to the driver; see `Engine.query`."""
        name = plan.step(step).name
        with self._views(plan, raw_files, datasets) as views:
            return [row.asDict() for row in views[name].collect()]

    def count_rows(self, files: Sequence[str]) -> int:
        if not files:
            return 0
        return int(self.spark.read.parquet(*[spark_path(f) for f in files]).count())

    def rewrite(self, sources: Sequence[str], source_bytes: int, out_dir: str,
                target_bytes: int, stem: str = "part") -> list[str]:
        """See `Engine.rewrite` and the module docstring."""
        from pyspark.sql import functions as F

        out = Path(out_dir)
        if out.exists():
            shutil.rmtree(out)
        rows = self.count_rows(sources)
        if rows == 0:
            return []
        paths = [spark_path(s) for s in sources]
        tasks = max(1, math.ceil(source_bytes / target_bytes)) if source_bytes else 1
        per_file = max(1, math.ceil(rows * target_bytes / source_bytes)) if source_bytes \
            else rows
        order = self.spark.createDataFrame([(self._uri(p), i) for i, p in enumerate(paths)],
                                           "`__uri` STRING, `__file` BIGINT")
        frame = self.spark.read.option("mergeSchema", "true").parquet(*paths)
        columns = [f"`{c}`" for c in frame.columns]
        ordered = (frame.select("*", F.input_file_name().alias("__uri"),
                                F.col("_metadata.row_index").alias("__row"))
                   .join(F.broadcast(order), "__uri")
                   .repartitionByRange(tasks, "__file", "__row")
                   .sortWithinPartitions("__file", "__row")
                   .select(*columns))
        written = out.parent / f".{out.name}-spark"
        shutil.rmtree(written, ignore_errors=True)
        (ordered.write.mode("overwrite").option("compression", "snappy")
         .option("maxRecordsPerFile", per_file).parquet(str(written)))
        out.mkdir(parents=True)
        files = []
        for i, part in enumerate(sorted(written.glob("part-*.parquet"))):
            files.append(str(part.replace(out / f"{stem}-{i}.parquet")))
        shutil.rmtree(written)
        return files

    def unreadable(self, raw_files: Sequence[str]) -> dict[str, str]:
        """See `Engine.unreadable`: one job, each `.gz` checked on an executor."""
        todo = [f for f in dict.fromkeys(raw_files) if rawcheck.needs_check(f)]
        if not todo:
            return {}
        from pyspark import cloudpickle

        # shipped by value: an executor's Python need not have `mad` installed
        cloudpickle.register_pickle_by_value(rawcheck)
        by_uri = {self._qualified(spark_path(f)): f for f in todo}
        frame = self.spark.read.format("binaryFile").load([spark_path(f) for f in todo])
        found = dict(frame.select("path", "content").rdd.map(rawcheck.check_row).collect())
        problems = {by_uri.get(uri, uri): why for uri, why in found.items() if why is not None}
        for uri, f in by_uri.items():  # Spark lists no empty file: no gzip header in it
            if uri not in found:
                problems[f] = rawcheck.EMPTY
        return problems

    def sweep(self) -> int:
        """Nothing of ours to sweep: a run writes only into its stage, which the partition
        store's recovery deletes, and Spark's own scratch (`spark.local.dir`) is Spark's."""
        return 0

    def select(self, sql: str, folders: Mapping[str, str],
               limit: int) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        """`mad query --engine spark`: one read-only SELECT (already checked, in DuckDB's
        dialect) over temporary views of the datasets' folders, partition columns read as
        strings as DuckDB reads them; (columns, at most `limit` rows, whether it was cut)."""
        self.spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        names = []
        try:
            for name, folder in folders.items():
                self.spark.read.option("basePath", folder).parquet(folder) \
                    .createOrReplaceTempView(name)
                names.append(name)
            frame = self.spark.sql(to_spark_sql(sql))
            rows = [tuple(r) for r in frame.limit(limit + 1).collect()]
            return list(frame.columns), rows[:limit], len(rows) > limit
        finally:
            for name in names:
                self.spark.catalog.dropTempView(name)

    def close(self) -> None:
        """Stop the session if this engine started it."""
        if self._owned:
            self.spark.stop()

    # -- inputs ----------------------------------------------------------------------------

    @contextmanager
    def _views(self, plan: Plan, raw_files: Sequence[str],
               datasets: Mapping[str, Sequence[str]]) -> Iterator[dict[str, DataFrame]]:
        """Every input and step of `plan` as a temporary view, dropped afterwards (cached
        steps unpersisted)."""
        sqls = {step.name: to_spark_sql(step.sql) for step in plan.steps}  # fail before reading
        views: dict[str, DataFrame] = {}
        cached: list[DataFrame] = []
        try:
            views[RAW_LINES] = self.raw_lines(raw_files)
            for name in plan.datasets:  # a dataset not given binds no files, as on DuckDB
                views[name] = self.dataset(plan, name, datasets.get(name, []))
            for name, frame in views.items():
                frame.createOrReplaceTempView(name)
            for step in plan.steps:
                frame = self.spark.sql(sqls[step.name])
                if step.cache:
                    frame = frame.cache()
                    cached.append(frame)
                frame.createOrReplaceTempView(step.name)
                views[step.name] = frame
            yield views
        finally:
            for frame in cached:
                frame.unpersist()
            for name in views:
                self.spark.catalog.dropTempView(name)

    def raw_lines(self, raw_files: Sequence[str]) -> DataFrame:
        """The `raw_lines` table of `raw_files` (see the module docstring)."""
        from pyspark.sql import functions as F

        files = list(dict.fromkeys(raw_files))
        if not files:
            return self.spark.createDataFrame([], RAW_LINES_DDL)
        rows = [(self._uri(spark_path(f)), f, ingest_hour(f)) for f in files]
        names = self.spark.createDataFrame(
            rows, "uri STRING, source_file STRING, ingest_hour TIMESTAMP_NTZ"
        )
        text = (
            self.spark.read.text([spark_path(f) for f in files], wholetext=True)
            .select(F.input_file_name().alias("uri"),
                    F.expr("make_valid_utf8(value)").alias("value"))
        )
        body = F.when(F.col("value").endswith("\n"),
                      F.expr("substr(value, 1, length(value) - 1)")).otherwise(F.col("value"))
        lines = text.select("uri", F.posexplode(F.split(body, "\n")).alias("pos", "raw"))
        line = F.when(F.col("raw").endswith("\r"),
                      F.expr("substr(raw, 1, length(raw) - 1)")).otherwise(F.col("raw"))
        joined = lines.join(F.broadcast(names), "uri")
        return joined.select(
            line.alias("line"),
            F.col("source_file"),
            (F.col("pos") + 1).cast("bigint").alias("line_no"),
            F.col("ingest_hour"),
        )

    def dataset(self, plan: Plan, name: str, files: Sequence[str]) -> DataFrame:
        """Dataset `name` of `plan` over its Parquet `files`, with their `key=value` folders as
        string columns, aligned by name on the plan's `schema_<name>` step when it has one
        (missing columns NULL); no files binds that step's empty, typed table."""
        from pyspark.sql import functions as F

        schema_step = next((s for s in plan.steps if s.name == f"schema_{name}"), None)
        schema = None if schema_step is None else self.spark.sql(
            to_spark_sql(schema_step.sql)).schema
        if not files:
            if schema is None:
                raise ConfigError(f"plan {plan.name}: dataset {name!r} has no files and the "
                                  f"plan no schema_{name} step to give it a schema")
            return self.spark.createDataFrame([], schema)
        paths = [spark_path(f) for f in dict.fromkeys(files)]
        frame = self.spark.read.option("mergeSchema", "true").parquet(*paths)
        partitions = {f: partition_values(f) for f in paths}
        keys = [k for k in dict.fromkeys(k for v in partitions.values() for k in v)
                if k not in frame.columns]
        if keys:
            rows = [(self._uri(f), *[values.get(k) for k in keys])
                    for f, values in partitions.items()]
            ddl = ", ".join(["`__uri` STRING", *[f"`{k}` STRING" for k in keys]])
            names = self.spark.createDataFrame(rows, ddl)
            frame = (frame.withColumn("__uri", F.input_file_name())
                     .join(F.broadcast(names), "__uri").drop("__uri"))
        if schema is not None:
            have = set(frame.columns)
            frame = frame.select(*[
                (F.col(f"`{c.name}`") if c.name in have else F.lit(None))
                .cast(c.dataType).alias(c.name) for c in schema.fields
            ])
        return frame

    def _qualified(self, path: str) -> str:
        """`path` as Spark's file listings spell it (qualified, not URL-encoded: the `path` of
        a `binaryFile` row)."""
        jvm = self.spark.sparkContext._jvm
        hadoop_conf = self.spark.sparkContext._jsc.hadoopConfiguration()
        hpath = jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
        return str(hpath.getFileSystem(hadoop_conf).makeQualified(hpath).toString())

    def _uri(self, path: str) -> str:
        """`path` as Spark's `input_file_name()` spells it (qualified, URL-encoded)."""
        jvm = self.spark.sparkContext._jvm
        hadoop_conf = self.spark.sparkContext._jsc.hadoopConfiguration()
        hpath = jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
        return str(hpath.getFileSystem(hadoop_conf).makeQualified(hpath).toUri().toString())

    # -- outputs ---------------------------------------------------------------------------

    def write(self, frame: DataFrame, path: str, partition_by: Sequence[str]) -> int:
        """Write `frame` as snappy Parquet under `path`, replacing only the partitions it has;
        return its row count (counted while writing)."""
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        seen = Observation()
        observed = frame.observe(seen, F.count(F.lit(1)).alias("rows"))
        if partition_by:
            observed = observed.repartition(*partition_by)
        (observed.write.mode("overwrite").option("compression", "snappy")
         .partitionBy(*partition_by).parquet(spark_path(path)))
        try:
            return int(seen.get["rows"])
        except Exception:  # seen with PySpark 4.3: no metrics row when nothing was written
            return int(frame.count())
