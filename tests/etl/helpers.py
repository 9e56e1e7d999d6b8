"""Test helpers: raw-lake files from a generated backfill, and one full events run."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import orjson

from mad.etl.engines.base import Engine
from mad.etl.parquet_lake import partition_files, publish, staging_dir, transformed_dataset
from mad.etl.transforms.events import events_plan, partitions_plan
from mad.events import parse_timestamp
from mad.lake import raw_partition


def split_backfill(events_file: Path, lake: Path) -> list[Path]:
    """Write a backfill's lines into raw-lake files by simulated ingest hour (the highest event
    time seen so far), per kind and service; unparseable lines go with the gateway logs."""
    frontier = 0.0
    buckets: dict[str, list[bytes]] = {}
    for line in events_file.read_bytes().splitlines():
        kind, service = "log", "gateway"
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            rec = None
        if isinstance(rec, dict):
            t = parse_timestamp(rec.get("timestamp"))
            if t is not None and (frontier == 0 or t < frontier + 6 * 3600):
                frontier = max(frontier, t)
            if rec.get("kind") in ("log", "metric", "apm"):
                kind = str(rec["kind"])
            if isinstance(rec.get("service"), str) and rec["service"]:
                service = str(rec["service"])
            elif isinstance(rec.get("event_type"), str):
                service = str(rec["event_type"]).split(".")[0]
                service = service if service in _SERVICES else "gateway"
        folder = raw_partition(kind, service, frontier)
        buckets.setdefault(folder, []).append(line)
    files = []
    for folder, lines in sorted(buckets.items()):
        path = lake / folder / f"part-{uuid.uuid4().hex}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(path)
    return files


_SERVICES = ("gateway", "auth", "accounts", "payments", "fraud", "notifications")


def run_events(engine: Engine, lake: Path, kind: str, raw_files: Iterable[Path],
               quarantine: str = "md-quarantine") -> dict[str, int]:
    """One events run over raw files of `kind`, published into the lake (two phases: find the
    touched partitions, then merge into exactly those)."""
    files = [str(p) for p in raw_files]
    dataset = transformed_dataset(kind)
    probe = staging_dir(lake, f"probe-{uuid.uuid4().hex}")
    engine.execute(partitions_plan(), files, {}, str(probe))
    parts = duckdb.sql(f"SELECT date, hour FROM '{probe}/partitions/*.parquet'").fetchall()
    existing = partition_files(lake, dataset, parts)
    run_id = uuid.uuid4().hex
    out = staging_dir(lake, run_id) / "out"
    counts = engine.execute(events_plan(kind), files, {"existing": existing}, str(out))
    key = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:32]
    publish(lake, run_id, {"events": dataset}, append={"quarantine": quarantine}, key=key)
    import shutil

    shutil.rmtree(probe, ignore_errors=True)
    return counts


def read_rows(files: list[str] | str, order: str = "event_id") -> list[tuple[Any, ...]]:
    """All rows of Parquet files (Hive columns as text), sorted."""
    listing = f"'{files}'" if isinstance(files, str) else "[" + ", ".join(f"'{f}'" for f in files)
    listing += "" if isinstance(files, str) else "]"
    sql = (f"SELECT * FROM read_parquet({listing}, hive_partitioning = true, "
           f"hive_types_autocast = false) ORDER BY {order}")
    return duckdb.sql(sql).fetchall()
