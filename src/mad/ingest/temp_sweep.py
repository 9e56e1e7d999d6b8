"""Sweeps the temp files a crashed raw writer left in a local lake.

A local put writes a hidden `.tmp-*` file and renames it into place; a crash between the two
leaves the temp file, which no listing shows and nothing else deletes. The raw writer is the
only writer of the raw datasets, so when it starts it deletes the temp files under them that
are older than `max_age_s`: old enough that no put of a live process can still own them
(a put takes seconds). Object stores without temp files (S3: a put is one request) have
nothing to sweep.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mad import lake
from mad.stores import ObjectStore
from mad.stores.local import TEMP_PREFIX, LocalStore

log = logging.getLogger(__name__)


def raw_prefixes() -> list[str]:
    """The lake folders only the raw writer writes."""
    return [*lake.RAW_DATASETS.values(), lake.ERRORS_DATASET]


def sweep_stale_temp(store: ObjectStore, max_age_s: float, now: float | None = None) -> int:
    """Delete the raw datasets' temp files older than `max_age_s`; returns how many."""
    if not isinstance(store, LocalStore):
        return 0
    cutoff = (time.time() if now is None else now) - max_age_s
    swept = 0
    for prefix in raw_prefixes():
        for dirpath, _, filenames in os.walk(store.root / prefix):
            for name in filenames:
                if name.startswith(TEMP_PREFIX) and _older(Path(dirpath, name), cutoff):
                    Path(dirpath, name).unlink(missing_ok=True)
                    swept += 1
    if swept:
        log.warning("raw writer: deleted %d temp files older than %.0f s that an interrupted "
                    "write left in %s", swept, max_age_s, store.url)
    return swept


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False
