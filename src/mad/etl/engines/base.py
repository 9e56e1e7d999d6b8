"""The engine Protocol: everything the ETL does to raw data and Parquet goes through it.

Engines are found by name in `ENGINES` (`ENGINES.create("duckdb", {"threads": 2})`); an
unknown name is a ConfigError listing the known ones. The runner never reads a raw line or
a Parquet file itself: with a Spark engine nothing but Spark touches the data (on a cluster,
the driver lists files and moves staged ones, the executors read and write them).

An engine never decides what rows mean: that is the plan's job. It binds the inputs, runs
the steps in order, and writes each output step's rows as snappy Parquet under
`out_dir/<output name>/` with Hive partitions `key=value` for the step's `partition_by`
columns (values are already strings such as `2026-11-01` and `07`). Besides running plans,
an engine counts the rows of Parquet files (the run's bookkeeping) and rewrites Parquet
files toward a target size (splitting a staged file that is too large, compacting a
partition of small ones), so that neither needs a second engine; it checks that raw files can
be read whole before a run reads them (a cut `.gz` reads as fewer lines, not as an error), and
sweeps what a killed process of its kind left in its scratch folders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

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

    def query(
        self,
        plan: Plan,
        raw_files: Sequence[str],
        datasets: Mapping[str, Sequence[str]],
        step: str,
    ) -> list[dict[str, Any]]:
        """Run `plan` as `execute` does, but write nothing: return the rows of `step`, one dict
        per row by column name. The rows travel to the caller, so this is for small results
        (which partitions a batch touches), never for data."""
        ...

    def count_rows(self, files: Sequence[str]) -> int:
        """The number of rows in the Parquet `files` (paths or URLs), from their footers."""
        ...

    def rewrite(self, sources: Sequence[str], source_bytes: int, out_dir: str,
                target_bytes: int, stem: str = "part") -> list[str]:
        """Write the rows of the Parquet `sources` (`source_bytes` in all), in their order and
        exactly as stored (no Hive columns added; a column missing from a file reads as
        NULL), as files of about `target_bytes` named `{stem}-{i}.parquet` in `out_dir`, a
        local folder made anew; return them in order (none when the sources hold no
        rows)."""
        ...

    def unreadable(self, raw_files: Sequence[str]) -> dict[str, str]:
        """The raw files (of `raw_files`) that cannot be read whole, each with why: a `.gz`
        cut short or corrupt (`mad.etl.engines.rawcheck`). Reads each file once; a file
        that is gone is not named (the next listing will not show it)."""
        ...

    def sweep(self) -> int:
        """Delete the scratch folders that processes which died left behind, never one a
        live process uses; returns how many. Called at the start of every pass."""
        ...

    def close(self) -> None: ...


ENGINES: Registry[Engine] = Registry("ETL engine", "mad.etl.engines", setting="etl.engine")
"""Engines by name; each factory takes its options (`etl.engine.<name>`) and `s3`, the
AwsSettings to reach an S3 lake with (None for a local lake)."""
