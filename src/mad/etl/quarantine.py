"""Quarantined lines are appended to their partition once, however often their file is read.

The events plan quarantines every invalid line of the files it reads, and the quarantine is
appended to (it has no key to merge on). A raw file is read again after a killed run, a
`mad etl backfill` or `reprocess`, and then usually in a differently cut batch, so the
batch-named quarantine file would not replace the earlier one and the lines would appear
twice. Before a run publishes, `drop_known` removes from its staged quarantine files the
lines whose `(source_file, line_no)` the live partition already holds: a raw file never
changes, so that pair names one line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from mad.etl.parquet_lake import partition_dirs
from mad.etl.publish import PartitionStore
from mad.etl.transforms.sql import sql_list, sql_str


def drop_known(con: duckdb.DuckDBPyConnection, lake: PartitionStore, dataset: str,
               staged: Path) -> int:
    """Filter the staged quarantine output under `staged` (`key=value/...` folders) against
    the live partitions of `dataset`; a staged file left empty is deleted. Returns how many
    lines were dropped."""
    dropped = 0
    for rel in partition_dirs(staged):
        live = lake.files(f"{dataset}/{rel.as_posix()}/")
        if not live:
            continue
        known = "[" + sql_list(lake.location(k) for k in sorted(live)) + "]"
        for f in sorted((staged / rel).glob("*.parquet")):
            kept = f.with_name(f".kept-{f.name}")
            con.execute(f"""
                COPY (SELECT s.* FROM read_parquet({sql_str(str(f))}, hive_partitioning = false)
                      AS s
                      ANTI JOIN (SELECT DISTINCT source_file, line_no
                                 FROM read_parquet({known}, hive_partitioning = false,
                                                   union_by_name = true)) AS k
                      ON k.source_file = s.source_file AND k.line_no = s.line_no)
                TO {sql_str(str(kept))} (FORMAT PARQUET, COMPRESSION SNAPPY)""")
            before = _rows(con, f)
            after = _rows(con, kept)
            dropped += before - after
            if after == 0:
                kept.unlink()
                f.unlink()
            elif after < before:
                kept.replace(f)
            else:
                kept.unlink()
        if not any((staged / rel).iterdir()):
            shutil.rmtree(staged / rel)
    return dropped


def _rows(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    row = con.execute(
        f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({sql_str(str(path))})"
    ).fetchone()
    return int(row[0]) if row else 0
