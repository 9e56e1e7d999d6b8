"""The lake's tables for engines users already run: an AWS Glue catalog (which Athena, EMR
and Trino read) and the equivalent `CREATE EXTERNAL TABLE` statements.

`lake_tables(store)` describes each dataset that has Parquet files, under the names of
`mad query`'s views (`events_logs`, `aggregates`, ...): its columns from the Parquet schema
of its newest file, its partition keys from the lake's Hive layout (`date`, `hour`,
`window`), and every partition. `ddl(...)` prints the statements for Athena or Trino;
`publish_glue(...)` creates the database and tables (or updates them) and adds the
partitions Glue does not have yet, through boto3.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mad.query.access import QueryError
from mad.query.sql import VIEWS
from mad.stores import ObjectStore

PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary":
                  "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
BATCH = 100  # partitions per BatchCreatePartition call (Glue's limit)


@dataclass
class TableDef:
    name: str  # the view's name
    dataset: str
    columns: list[tuple[str, str]]  # (name, Hive type), partition keys excluded
    partition_keys: list[str]
    partitions: list[list[str]] = field(default_factory=list)  # values, in key order


def hive_type(t: pa.DataType) -> str:
    """The Hive/Athena type of an Arrow type (strings for what has no match)."""
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_float32(t):
        return "float"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    return "string"


def lake_tables(store: ObjectStore) -> list[TableDef]:
    """Every dataset of `store` with Parquet files, described (see the module docstring)."""
    out = []
    for name, dataset in VIEWS.items():
        files = {k: n for k, n in store.sizes(dataset + "/").items() if k.endswith(".parquet")}
        if not files:
            continue
        paths = sorted({k.removeprefix(dataset + "/").rsplit("/", 1)[0] for k in files})
        keys = [p.split("=", 1)[0] for p in paths[0].split("/")]
        newest = sorted(files)[-1]
        schema = pq.read_schema(io.BytesIO(store.get(newest)))
        columns = [(f.name, hive_type(f.type)) for f in schema if f.name not in keys]
        values = [[seg.split("=", 1)[1] for seg in p.split("/")] for p in paths
                  if [s.split("=", 1)[0] for s in p.split("/")] == keys]
        out.append(TableDef(name, dataset, columns, keys, values))
    return out


def _check_name(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[:1].isalpha() or len(name) > 128:
        raise QueryError(f"database name {name!r}: letters, digits and _ only, starting with "
                         "a letter")
    return name


def ddl(tables: Iterable[TableDef], database: str, root: str) -> str:
    """`CREATE EXTERNAL TABLE` statements (Athena, Trino's Hive connector) for `tables` of
    the lake at `root` (e.g. `s3://bucket/prefix`), then `MSCK REPAIR TABLE` to find the
    partitions."""
    db = _check_name(database)
    lines = [f"CREATE DATABASE IF NOT EXISTS {db};", ""]
    for t in tables:
        cols = ",\n".join(f"  `{n}` {typ}" for n, typ in t.columns)
        parts = ", ".join(f"`{k}` string" for k in t.partition_keys)
        lines += [f"CREATE EXTERNAL TABLE IF NOT EXISTS {db}.{t.name} (", cols, ")",
                  f"PARTITIONED BY ({parts})", "STORED AS PARQUET",
                  f"LOCATION '{root.rstrip('/')}/{t.dataset}/';",
                  f"MSCK REPAIR TABLE {db}.{t.name};", ""]
    return "\n".join(lines)


def publish_glue(tables: Iterable[TableDef], database: str, root: str, glue: Any) -> dict[str, int]:
    """Create (or update) the Glue database and tables and add the partitions it lacks;
    returns the partitions added per table."""
    db = _check_name(database)
    try:
        glue.get_database(Name=db)
    except glue.exceptions.EntityNotFoundException:
        glue.create_database(DatabaseInput={"Name": db, "Description": "the mad lake"})
    added: dict[str, int] = {}
    for t in tables:
        location = f"{root.rstrip('/')}/{t.dataset}/"
        table: dict[str, Any] = {
            "Name": t.name, "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in t.partition_keys],
            "StorageDescriptor": {"Columns": [{"Name": n, "Type": typ} for n, typ in t.columns],
                                  "Location": location, **PARQUET},
        }
        try:
            glue.get_table(DatabaseName=db, Name=t.name)
            glue.update_table(DatabaseName=db, TableInput=table)
        except glue.exceptions.EntityNotFoundException:
            glue.create_table(DatabaseName=db, TableInput=table)
        known = {tuple(p["Values"]) for page in glue.get_paginator("get_partitions").paginate(
            DatabaseName=db, TableName=t.name) for p in page["Partitions"]}
        new = [v for v in t.partitions if tuple(v) not in known]
        for i in range(0, len(new), BATCH):
            glue.batch_create_partition(DatabaseName=db, TableName=t.name, PartitionInputList=[
                {"Values": v, "StorageDescriptor": {
                    "Columns": table["StorageDescriptor"]["Columns"], **PARQUET,
                    "Location": location + "/".join(f"{k}={x}" for k, x in
                                                    zip(t.partition_keys, v, strict=True)) + "/"}}
                for v in new[i:i + BATCH]])
        added[t.name] = len(new)
    return added
