"""Parquet files of about `etl.target_file_bytes`: split large staged files, merge small ones.

Readers pay per file (an open, a footer, on S3 a request), and pay again for files far larger
than a row group reader wants; the lake aims at files of about the target size:

- `split_large`: before a publish, a staged file above `SPLIT_OVER` x target (a big
  partition written by one COPY) is rewritten as several files of about the target;
- `compact_partition`: a live partition whose files could be fewer (small files piling up,
  e.g. one quarantine file per run) is rewritten whole into a stage and published by the
  store's swap, like any other write, so a crash leaves the old or the new files.

Both rewrite through the run's engine (`Engine.rewrite`), so with Spark no other engine
touches the lake: every row comes back exactly as it was stored (older files missing a newer
column get NULL in it, as every reader of the lake already sees), in the order it was
stored, in files of about the target size.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from mad.etl.engines import Engine
from mad.etl.publish import PartitionStore

SPLIT_OVER = 1.5  # a file above this x target is split
AUTO_SMALL_FILES = 8  # a run's pass compacts a partition it wrote with this many small files


def worth_compacting(sizes: Sequence[int], target: int) -> bool:
    """Whether rewriting these files at `target` bytes each would give fewer files, or split
    one that is much too large."""
    if not sizes:
        return False
    wanted = max(1, math.ceil(sum(sizes) / target))
    return len(sizes) > wanted or max(sizes) > SPLIT_OVER * target


def small_files(sizes: Sequence[int], target: int) -> int:
    """How many files are under half the target."""
    return sum(1 for s in sizes if s < target / 2)


def split_large(engine: Engine, folder: Path, target: int) -> int:
    """Split every staged Parquet file under `folder` above `SPLIT_OVER` x target into files
    of about the target, in the same partition folder; returns how many were split."""
    split = 0
    for f in sorted(folder.rglob("*.parquet")) if folder.is_dir() else []:
        if f.stat().st_size <= SPLIT_OVER * target:
            continue
        pieces = f.parent.parent / f".split-{f.parent.name}-{f.stem}"
        size = f.stat().st_size
        for piece in engine.rewrite([str(f)], size, str(pieces), target, stem=f"{f.stem}-split"):
            Path(piece).replace(f.parent / Path(piece).name)
        shutil.rmtree(pieces, ignore_errors=True)
        f.unlink()
        split += 1
    return split


def compact_partition(lake: PartitionStore, engine: Engine, partition: str, target: int,
                      run_id: str) -> bool:
    """Rewrite `dataset/key=value/...` as files of about `target` bytes when that gives fewer
    files (or splits a too-large one), published by staging and swap; False when left as
    is."""
    files = lake.files(partition.rstrip("/") + "/")
    if not worth_compacting(list(files.values()), target):
        return False
    dataset, _, rel = partition.partition("/")
    try:
        written = engine.rewrite([lake.location(k) for k in sorted(files)],
                                 sum(files.values()),
                                 str(lake.stage(run_id) / "out" / "compact" / rel), target)
        if not written:  # no rows at all: nothing to publish, leave the partition alone
            return False
        lake.publish(run_id, {"compact": dataset})
    finally:
        lake.discard(run_id)
    return True
