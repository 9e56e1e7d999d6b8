"""Quarantined lines are appended to their partition once, however often their file is read.

The events plan quarantines every invalid line of the files it reads, and the quarantine is
appended to (it has no key to merge on). A raw file is read again after a killed run, a
`mad etl backfill` or `reprocess`, and then usually in a differently cut batch, so the
batch-named quarantine file would not replace the earlier one and the lines would appear
twice. Before a run publishes, `drop_known` runs `known_lines_plan` on the run's engine over
the staged quarantine partitions that already exist live, and puts the rows it keeps in
their place: a raw file never changes, so `(source_file, line_no)` names one line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mad.etl.engines import Engine
from mad.etl.parquet_lake import partition_dirs
from mad.etl.publish import PartitionStore
from mad.etl.transforms.quarantine import known_lines_plan


def drop_known(engine: Engine, lake: PartitionStore, dataset: str, staged: Path,
               scratch: Path, reading: dict[str, str] | None = None) -> int:
    """Filter the staged quarantine output under `staged` (`key=value/...` folders) against
    the live partitions of `dataset`, writing through `scratch` (a local folder of the run's
    own, deleted afterwards); a staged partition left empty is deleted. The live files read
    go into `reading` (location -> key). Returns how many lines were dropped."""
    live = {rel: sorted(lake.files(f"{dataset}/{rel.as_posix()}/"))
            for rel in partition_dirs(staged)}
    live = {rel: keys for rel, keys in live.items() if keys}
    if not live:
        return 0
    staged_files = [str(f) for rel in live for f in sorted((staged / rel).glob("*.parquet"))]
    known = [lake.location(k) for keys in live.values() for k in keys]
    if reading is not None:
        reading.update({lake.location(k): k for keys in live.values() for k in keys})
    try:
        counts = engine.execute(known_lines_plan(), [],
                                {"staged": staged_files, "known": known}, str(scratch))
        for rel in live:
            shutil.rmtree(staged / rel)
            kept = scratch / "quarantine" / rel
            if kept.is_dir():
                (staged / rel).mkdir(parents=True)
                for f in sorted(kept.glob("*.parquet")):
                    f.replace(staged / rel / f.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return counts["count_staged"] - counts["quarantine"]
