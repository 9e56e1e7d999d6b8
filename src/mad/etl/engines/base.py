"""The engine Protocol: runs a `Plan` and writes its outputs as partitioned Parquet.

Engines are found by name in `ENGINES` (`ENGINES.create("duckdb", {"threads": 2})`); an
unknown name is a ConfigError listing the known ones. An engine never decides what rows
mean: that is the plan's job. It binds the inputs, runs the steps in order, and writes each
output step's rows as snappy Parquet under `out_dir/<output name>/` with Hive partitions
`key=value` for the step's `partition_by` columns (values are already strings such as
`2026-11-01` and `07`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from mad.etl.plan import Plan
from mad.registry import Registry


class Engine(Protocol):
    name: str

    def execute(
        self,
        plan: Plan,
        raw_files: Sequence[str],
        datasets: Mapping[str, Sequence[str]],
        out_dir: str,
    ) -> dict[str, int]:
        """Run `plan` over `raw_files` (JSONL, plain or .gz, local paths or s3:// URLs) with
        each name in `plan.datasets` bound to the Parquet files listed in `datasets` (an empty
        list binds an empty table of the plan's declared schema); write every output; return
        the row count of every step named in `plan.outputs` and of every step whose name
        starts with `count_` (for the run's bookkeeping)."""
        ...

    def close(self) -> None: ...


ENGINES: Registry[Engine] = Registry("ETL engine", "mad.etl.engines", setting="etl.engine")
"""Engines by name; each factory takes its options (`etl.engine.<name>`) and `s3`, the
AwsSettings to reach an S3 lake with (None for a local lake)."""
