"""Finds raw files the ETL has not read yet and cuts them into runs.

New files in old partitions count too: discovery compares the lake's listing with the
files that succeeded runs have read (`etl_inputs`), not with a high-water mark. Runs are cut
in ingest order, each at most `batch_bytes` of raw data and `batch_files` files.

A `part-*` key that does not follow the raw-lake layout (a file copied into the wrong folder)
is skipped with a warning rather than stopping every pass; it stays where it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mad import lake
from mad.stores import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawFile:
    key: str
    bytes: int
    hour: float  # ingest hour (epoch seconds), from the partition path


def pending(store: ObjectStore, done: set[str]) -> list[RawFile]:
    """Raw event files (errors excluded) not yet read by a succeeded run, oldest first."""
    out = []
    for dataset in lake.RAW_DATASETS.values():
        for key, size in store.sizes(dataset + "/").items():
            if key in done or not key.rsplit("/", 1)[-1].startswith("part-"):
                continue
            try:
                hour = lake.parse_key(key).start
            except lake.LakePathError as err:
                log.warning("skipping a raw file outside the lake layout: %s", err)
                continue
            out.append(RawFile(key, size, hour))
    return sorted(out, key=lambda f: (f.hour, f.key))


def batches(files: list[RawFile], max_bytes: int, max_files: int) -> list[list[RawFile]]:
    """Consecutive runs of files, each within both limits (a file larger than `max_bytes`
    gets a run of its own)."""
    runs: list[list[RawFile]] = []
    current: list[RawFile] = []
    size = 0
    for f in files:
        if current and (size + f.bytes > max_bytes or len(current) >= max_files):
            runs.append(current)
            current, size = [], 0
        current.append(f)
        size += f.bytes
    if current:
        runs.append(current)
    return runs
