"""Test helpers: raw-lake files from a generated backfill, and one full events run."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from mad import lake as lake_names
from mad.etl.engines import Engine
from mad.etl.engines.duckdb.engine import DuckDBEngine
from mad.etl.parquet_lake import partition_files, publish, staging_dir
from mad.etl.publish import PartitionStore
from mad.etl.transforms.events import events_plan, partitions_plan
from mad.generate.raw_lake import split_backfill  # noqa: F401  (re-exported for tests)


def run_events(engine: Engine, lake: Path, kind: str, raw_files: Iterable[Path],
               quarantine: str = lake_names.QUARANTINE_DATASET) -> dict[str, int]:
    """One events run over raw files of `kind`, published into the lake (two phases: find the
    touched partitions, then merge into exactly those)."""
    files = [str(p) for p in raw_files]
    dataset = lake_names.transformed_dataset(kind)
    rows = engine.query(partitions_plan(), files, {}, "partitions")
    existing = partition_files(lake, dataset, [(r["date"], r["hour"]) for r in rows])
    run_id = uuid.uuid4().hex
    out = staging_dir(lake, run_id) / "out"
    counts = engine.execute(events_plan(kind), files, {"existing": existing}, str(out))
    key = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:32]
    publish(lake, run_id, {"events": dataset}, append={"quarantine": quarantine}, key=key)
    return counts


def lake_connection(parts: PartitionStore) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that reads the locations of `parts` (S3 through httpfs), for tests
    to look at what a run wrote, whichever engine wrote it."""
    return DuckDBEngine(memory_limit="1GB", s3=parts.credentials).connect()


def read_rows(files: list[str] | str, order: str = "event_id") -> list[tuple[Any, ...]]:
    """All rows of Parquet files (Hive columns as text), sorted."""
    listing = f"'{files}'" if isinstance(files, str) else "[" + ", ".join(f"'{f}'" for f in files)
    listing += "" if isinstance(files, str) else "]"
    sql = (f"SELECT * FROM read_parquet({listing}, hive_partitioning = true, "
           f"hive_types_autocast = false) ORDER BY {order}")
    return duckdb.sql(sql).fetchall()


def float_blind(row: tuple[Any, ...]) -> str:
    """A sort key that ignores floats (compare those with `same`)."""
    return repr([None if isinstance(v, float) else v for v in row])


def same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    """Equal rows, floats within 1e-9 relative: aggregates sum in parallel, so two runs may
    differ in the last bits (rounding both to N digits still differs across a boundary)."""
    def close(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return bool(a == b)

    return len(got) == len(want) and all(
        len(g) == len(w) and all(close(a, b) for a, b in zip(g, w, strict=True))
        for g, w in zip(got, want, strict=True))
