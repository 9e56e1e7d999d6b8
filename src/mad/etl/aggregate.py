"""The aggregates of one event day, and which days need them.

A pass recomputes the windows of every day the state database shows as due
(`EtlLedger.aggregates_due`: the day's events changed after its aggregates were last
published, or they never were), not only the days this pass wrote: a pass killed or failing
inside the aggregation leaves its days due, and the next pass, even with no new raw file,
computes them. Each day is one recorded run (plan `aggregates`) that publishes each window's
`window=/date=` partitions by staging and swap and, in the transaction that records it as
succeeded, marks those windows current for the day's version of events.

The same run measures how far each source's events of the day have reached (`day_clocks`,
`mad.etl.transforms.clocks`), recorded with the aggregates (`mad.state.event_clocks`): what
detection's watermark is computed from.

A state database from before days were versioned has none; the first pass versions the days
its runs wrote, taking the aggregates already in the lake as current (`adopt_unversioned`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mad import lake
from mad.etl import compact as comp
from mad.etl.engines import Engine
from mad.etl.publish import PartitionStore
from mad.etl.transforms.aggregates import HISTORY_WINDOWS, WINDOWS, aggregates_plan
from mad.etl.transforms.clocks import clocks_plan
from mad.state import EtlLedger
from mad.state.event_clocks import SourceClock

log = logging.getLogger(__name__)

AGGREGATES = lake.AGGREGATES_DATASET
HISTORY_DAYS = 2  # days of events before a recomputed day, for the outlier score
_HOUR = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")
_PUBLISHED = re.compile(r"window=([^/]+)/date=(\d{4}-\d{2}-\d{2})/")


def adopt_unversioned(ledger: EtlLedger, parts: PartitionStore) -> int:
    """Version the days of a lake the ETL wrote before days had versions; returns how many."""
    days = ledger.unversioned_days()
    if not days:
        return 0
    published = {(m[1], m[2]) for key in parts.files(AGGREGATES + "/")
                 if (m := _PUBLISHED.search(key))}
    ledger.adopt_days(days, published)
    return len(days)


def day_keys(parts: PartitionStore, days: Sequence[str]) -> list[str]:
    """The keys of every transformed-lake file of these event days, all kinds."""
    keys: list[str] = []
    for kind in lake.KINDS:
        for day in days:
            keys += sorted(parts.files(lake.day_prefix(lake.transformed_dataset(kind), day)))
    return keys


def aggregate_day(engine: Engine, parts: PartitionStore, day: str, windows: Sequence[str],
                  run_id: str, target_bytes: int,
                  reading: Callable[[Sequence[str]], list[str]]) -> list[str]:
    """Compute and publish the `windows` of `day`; returns the partitions replaced.
    `reading(keys)` gives the locations of the lake files to read (and notes them, for a
    failure's reason)."""
    first = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    history_days = [(first - timedelta(days=d)).strftime("%Y-%m-%d")
                    for d in range(HISTORY_DAYS, 0, -1)]
    events = reading(day_keys(parts, [day]))
    history = reading(day_keys(parts, history_days))
    replaced: list[str] = []
    for window in windows:
        stage_id = f"{run_id}-{window}"
        out = parts.stage(stage_id) / "out"
        engine.execute(aggregates_plan(window), [],
                       {"events": events, "history": recent(history, first, window)}, str(out))
        comp.split_large(engine, out / "aggregates", target_bytes)
        replaced += parts.publish(stage_id, {"aggregates": AGGREGATES})
    return replaced


def day_clocks(engine: Engine, parts: PartitionStore, day: str,
               reading: Callable[[Sequence[str]], list[str]]) -> list[SourceClock]:
    """How far each source's events of `day` have reached (`mad.etl.transforms.clocks`); a
    row the engine returns out of shape is left out with a warning."""
    events = reading(day_keys(parts, [day]))
    if not events:
        return []
    out = []
    for row in engine.query(clocks_plan(), [], {"events": events}, "clocks"):
        clock = _clock(row)
        if clock is None:
            log.warning("day %s: source clock row left out (out of shape): %r", day, row)
            continue
        out.append(clock)
    return out


def _clock(row: dict[str, Any]) -> SourceClock | None:
    try:
        newest = float(row["newest_event"])
        ingest = row.get("newest_ingest")
        return SourceClock(str(row["kind"]), str(row["service"]), str(row["host"] or ""),
                           datetime.fromtimestamp(newest, UTC),
                           datetime.fromtimestamp(float(ingest), UTC)
                           if ingest is not None and math.isfinite(float(ingest)) else None,
                           int(row["events"]))
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


def recent(files: list[str], first: datetime, window: str) -> list[str]:
    """The history files a window's outlier score can reach: the event hours within twice
    `HISTORY_WINDOWS` windows before `first` (twice, so a series with quiet windows still
    finds its previous ones), at most `HISTORY_DAYS` days. For 1m windows that is one hour
    instead of two days of events."""
    reach = timedelta(seconds=min(2 * HISTORY_WINDOWS * WINDOWS[window], HISTORY_DAYS * 86400))
    start = (first - reach).replace(minute=0, second=0, microsecond=0)
    keep = []
    for f in files:
        found = _HOUR.search(f)
        if found and datetime.strptime(f"{found[1]} {found[2]}", "%Y-%m-%d %H").replace(
                tzinfo=UTC) >= start:
            keep.append(f)
    return keep
