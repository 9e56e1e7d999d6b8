"""The engine Protocol: runs a `Plan` and writes its outputs as partitioned Parquet.

Engines are found by name through a small registry (`open_engine("duckdb")`); an unknown
name is a ConfigError listing the known ones. An engine never decides what rows mean: that is
the plan's job. It binds the inputs, runs the steps in order, and writes each output step's
rows as snappy Parquet under `out_dir/<output name>/` with Hive partitions `key=value` for the
step's `partition_by` columns (values are already strings such as `2026-11-01` and `07`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from mad.errors import ConfigError
from mad.etl.plan import Plan


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


_ENGINES: dict[str, Callable[..., Engine]] = {}
KNOWN = ("duckdb", "spark")


def register_engine(name: str) -> Callable[[Callable[..., Engine]], Callable[..., Engine]]:
    def add(factory: Callable[..., Engine]) -> Callable[..., Engine]:
        _ENGINES[name] = factory
        return factory

    return add


def open_engine(name: str, **options: object) -> Engine:
    if name not in KNOWN:
        raise ConfigError(f"unknown ETL engine '{name}' (known: {', '.join(KNOWN)})")
    if name not in _ENGINES:
        importlib.import_module(f"mad.etl.engines.{name}_engine")
    return _ENGINES[name](**options)
