"""The lake's datasets for the Data Browser: each dataset with its partitions, files, bytes
and rows, the files of one partition, and a paged preview of one file (`mad.query.preview`).

Sizes and file counts come from the lake's listing (through its object store); rows and
last-modified times from the state database where a ledger knows them: the raw files ledger
for the raw datasets (records per file, write time), `etl_partitions` for what the ETL
writes. Unknown rows are None (a lake whose files no ledger recorded, the anomalies).
A missing lake is a ConfigError; a missing state database only leaves rows None.
Partitions the quality gate holds are left out (`mad.query.gate`): a held transformed hour,
and the days of aggregates and anomalies it hides; each dataset says how many it `held`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from mad import lake
from mad.config import Settings
from mad.errors import ConfigError, TransientError
from mad.query.access import DB_ERRORS, QueryError, open_lake, state_db
from mad.query.gate import Held, Shown, held_now
from mad.query.preview import Page, file_format, preview
from mad.state.etl_runs import etl_partitions
from mad.state.raw_files import raw_files
from mad.stores import ObjectStore

__all__ = ["DATASETS", "Page", "datasets", "files", "partitions", "preview"]

DATASETS: dict[str, str] = {
    **{name: "raw" for name in lake.RAW_DATASETS.values()},
    lake.ERRORS_DATASET: "errors",
    **{name: "transformed" for name in lake.TRANSFORMED_DATASETS.values()},
    lake.QUARANTINE_DATASET: "quarantine",
    lake.AGGREGATES_DATASET: "aggregates",
    lake.ANOMALIES_DATASET: "anomalies",
}
"""Every dataset of the lake -> its kind, in the order the pipeline writes them."""
_SEGMENT = re.compile(r"[a-z_]{1,32}=[A-Za-z0-9_.:-]{1,128}")


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise QueryError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return dataset


def check_partition(partition: str) -> str:
    """A partition path of `key=value` folders (`date=2026-11-01/hour=07`), nothing else."""
    parts = partition.split("/") if isinstance(partition, str) else []
    if not parts or len(parts) > 8 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise QueryError(f"bad partition {partition!r}: expected key=value folders such as "
                         "date=2026-11-01/hour=07")
    return partition


def _listing(store: ObjectStore, dataset: str, gate: Held) -> tuple[
        dict[str, dict[str, int]], set[str]]:
    """partition -> {key: bytes} of the data files of `dataset` (hidden files skipped), and
    the held partitions that hid some of them."""
    out: dict[str, dict[str, int]] = {}
    prefix = f"{dataset}/"
    for key, size in store.sizes(prefix).items():
        folder, _, name = key[len(prefix):].rpartition("/")
        if not folder or name.startswith((".", "_")) or file_format(name) is None:
            continue
        out.setdefault(folder, {})[key] = size
    held: set[str] = set()
    if gate:
        for folder in list(out):
            hiding = gate.hiding(dataset, folder)
            if hiding:
                held.update(hiding)
                del out[folder]
    return out, held


def _known(settings: Settings, datasets: Iterable[str]) -> tuple[
        dict[str, tuple[int, datetime]], dict[tuple[str, str], tuple[int, datetime]]]:
    """What the ledgers know: raw file key -> (records, written at), and (dataset,
    partition) -> (rows, updated at) of ETL outputs; empty when the state cannot be read."""
    wanted = list(datasets)
    try:
        with state_db(settings) as engine:
            return _raw_rows(engine, wanted), _etl_rows(engine, wanted)
    except (ConfigError, TransientError, *DB_ERRORS):
        return {}, {}


def _raw_rows(engine: Engine, datasets: list[str]) -> dict[str, tuple[int, datetime]]:
    names = [d for d in datasets if DATASETS[d] in ("raw", "errors")]
    if not names:
        return {}
    q = select(raw_files.c.key, raw_files.c.records, raw_files.c.written_at).where(
        raw_files.c.dataset.in_(names))
    with engine.connect() as conn:
        return {str(k): (int(n), t) for k, n, t in conn.execute(q)}


def _etl_rows(engine: Engine, datasets: list[str]) -> dict[tuple[str, str], tuple[int, datetime]]:
    q = select(etl_partitions.c.dataset, etl_partitions.c.partition, etl_partitions.c.rows,
               etl_partitions.c.updated_at).where(etl_partitions.c.dataset.in_(datasets))
    with engine.connect() as conn:
        return {(str(d), str(p)): (int(n), t) for d, p, n, t in conn.execute(q)}


def _partition_rows(dataset: str, partition: str, keys: dict[str, int],
                    raw: dict[str, tuple[int, datetime]],
                    etl: dict[tuple[str, str], tuple[int, datetime]],
                    ) -> tuple[int | None, datetime | None]:
    """Rows and last-modified time of one partition, where a ledger knows them."""
    if DATASETS[dataset] in ("raw", "errors"):
        if not all(k in raw for k in keys):
            times = [raw[k][1] for k in keys if k in raw]
            return None, max(times) if times else None
        return sum(raw[k][0] for k in keys), max(raw[k][1] for k in keys)
    known = etl.get((dataset, partition))
    return (None, None) if known is None else known


def datasets(settings: Settings) -> list[dict[str, Any]]:
    """Every dataset of the lake, in pipeline order, present or not: `name`, `kind` (raw,
    errors, transformed, quarantine, aggregates, anomalies), `partitions`, `files`, `bytes`,
    `rows` (None unless a ledger knows every partition's rows), `last_modified`, and `held`:
    the partitions the quality gate holds that hid some of it (left out of the counts)."""
    store = open_lake(settings)
    raw, etl = _known(settings, DATASETS)
    gate = held_now(settings)
    out = []
    for name, kind in DATASETS.items():
        listing, held = _listing(store, name, gate)
        rows: int | None = 0
        times = []
        for partition, keys in listing.items():
            n, when = _partition_rows(name, partition, keys, raw, etl)
            rows = None if rows is None or n is None else rows + n
            if when is not None:
                times.append(when)
        out.append({"name": name, "kind": kind, "partitions": len(listing),
                    "files": sum(len(k) for k in listing.values()),
                    "bytes": sum(sum(k.values()) for k in listing.values()),
                    "rows": rows if listing else 0,
                    "last_modified": max(times) if times else None, "held": len(held)})
    return out


def partitions(settings: Settings, dataset: str) -> Shown[dict[str, Any]]:
    """The partitions of one dataset, in path order: `partition` (its path under the
    dataset), `files`, `bytes`, `rows` and `last_modified` (None when no ledger knows).
    Those the quality gate holds are left out; `.held` names the held partitions."""
    check_dataset(dataset)
    store = open_lake(settings)
    raw, etl = _known(settings, [dataset])
    listing, held = _listing(store, dataset, held_now(settings))
    out = []
    for partition, keys in sorted(listing.items()):
        rows, when = _partition_rows(dataset, partition, keys, raw, etl)
        out.append({"partition": partition, "files": len(keys), "bytes": sum(keys.values()),
                    "rows": rows, "last_modified": when})
    return Shown(out, held)


def files(settings: Settings, dataset: str, partition: str) -> Shown[dict[str, Any]]:
    """The data files of one partition, by key: `key` (what `preview` takes), `bytes`,
    `format` (one of `FORMATS`); empty for a partition with none, and for one the quality
    gate holds (`.held` names what holds it)."""
    check_dataset(dataset)
    check_partition(partition)
    held = held_now(settings).hiding(dataset, partition)
    if held:
        return Shown((), held)
    store = open_lake(settings)
    prefix = f"{dataset}/{partition}/"
    out = []
    for key, size in sorted(store.sizes(prefix).items()):
        name = key[len(prefix):]
        fmt = file_format(name)
        if "/" in name or name.startswith((".", "_")) or fmt is None:
            continue
        out.append({"key": key, "bytes": size, "format": fmt})
    return Shown(out)


