"""A transform, written once: named SQL steps that every engine runs the same way.

A `Plan` is a list of `Step`s. Each step is ONE `SELECT` in DuckDB's SQL dialect that reads
the plan's inputs or earlier steps by name; the engine makes every step a view (or a cached
table) under that name. DuckDB runs the SQL as written; Spark runs `sqlglot`'s translation of
it to Spark SQL. Engines differ only in how inputs are bound and outputs written, never in
the transform's logic, and a parity test runs every plan on both engines.

Inputs an engine binds by name (see `mad.etl.engines.base.Engine`):
- `raw_lines(line VARCHAR, source_file VARCHAR, line_no BIGINT, ingest_hour TIMESTAMP)`: the
  raw JSONL lines of the input files, one row per line, untouched;
- any Parquet dataset the plan declares in `datasets` (e.g. the rows already in the target
  partitions, for deduplication), as a table of that name. Its columns are those of the
  plan's step `schema_<dataset>`, a typed `SELECT ... WHERE false`: an empty file list binds
  an empty table of that shape, and Parquet files are aligned to it by column name (a column
  missing from older files reads as NULL).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    name: str
    sql: str
    cache: bool = False  # materialise once: the step is read by several later steps
    partition_by: tuple[str, ...] = ()  # for output steps: Hive partition columns, in order


@dataclass(frozen=True)
class Plan:
    name: str
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]  # names of steps whose rows are the plan's results
    datasets: tuple[str, ...] = field(default_factory=tuple)  # Parquet inputs bound by name

    def schema_step(self, dataset: str) -> Step:
        """The typed empty `SELECT` that gives `dataset`'s columns."""
        return self.step(f"schema_{dataset}")

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"plan {self.name} has no step {name!r}")
