"""The partitions an events run checks its `event_id`s against beyond the ones it rewrites.

A run merges its new events into the event-hour partitions they fall in (`existing`), which
makes an `event_id` unique within a partition. An id that another event hour already holds
would pass unseen, so the run also reads the ids (that column only) of the dataset's other
partitions within `etl.dedup_horizon_hours` of event time before the first and after the
last partition it touches: a copy found there is quarantined as `reused_event_id` (see
`mad.etl.transforms.events`). Pure: the partition listing comes in, the files go out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from mad import lake

_HOUR = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


def hour_of(date: str, hour: str) -> datetime:
    return datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def horizon_keys(dataset: str, touched: Iterable[tuple[str, str]], hours: int,
                 files: Callable[[str], Iterable[str]]) -> list[str]:
    """The keys of `dataset`'s Parquet files in event hours within `hours` of the `touched`
    `(date, hour)` partitions, those partitions excluded; `files(prefix)` lists a day's keys."""
    parts = set(touched)
    if hours <= 0 or not parts:
        return []
    stamps = [hour_of(d, h) for d, h in parts]
    low, high = min(stamps) - timedelta(hours=hours), max(stamps) + timedelta(hours=hours)
    keys: list[str] = []
    day = low.replace(hour=0)
    while day <= high:
        for key in sorted(files(lake.day_prefix(dataset, f"{day:%Y-%m-%d}"))):
            found = _HOUR.search(key)
            if found is None or (found[1], found[2]) in parts:
                continue
            if low <= hour_of(found[1], found[2]) <= high:
                keys.append(key)
        day += timedelta(days=1)
    return keys
