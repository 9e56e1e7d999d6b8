"""Sweeps what interrupted puts of a crashed raw writer left in the lake.

A local put writes a hidden `.tmp-*` file and renames it into place; an S3 put above the
multipart threshold is an upload completed at the end. A crash in between leaves the temp
file or the open upload, which no listing shows and nothing else deletes. Only raw writers
write the raw datasets, so when one starts it asks the store to remove what is older than
`max_age_s` under them: old enough that no put of a live process can own it.

Several writers may share one lake (one per leased shard set, `shard_leases.py`), so a
writer that starts sweeps while others write. That is safe because a put's temp file lives
only for that one put (write, fsync, rename: well under a second for a raw file of at most
`flush_bytes`), and its age is that of its last write (`st_mtime`), while only files older than
`stale_temp_s` (default 1 h, always > 0) are deleted; an S3 upload is aborted only when it was
initiated longer ago than that.
"""

from __future__ import annotations

import logging

from mad import lake
from mad.errors import MadError
from mad.stores import ObjectStore

log = logging.getLogger(__name__)


def raw_prefixes() -> list[str]:
    """The lake folders only the raw writer writes."""
    return [f"{d}/" for d in (*lake.RAW_DATASETS.values(), lake.ERRORS_DATASET)]


def sweep_stale_temp(store: ObjectStore, max_age_s: float) -> int:
    """Remove the raw datasets' leftovers older than `max_age_s`; returns how many. A store
    that cannot be swept now is tried again at the next start (they cost space, not data)."""
    try:
        swept = sum(store.sweep_partial(prefix, max_age_s) for prefix in raw_prefixes())
    except MadError as err:
        log.warning("raw writer: could not sweep leftovers of interrupted writes: %s", err)
        return 0
    if swept:
        log.warning("raw writer: removed %d leftovers older than %.0f s of interrupted writes "
                    "in %s", swept, max_age_s, store.url)
    return swept
