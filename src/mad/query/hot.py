"""How a read splits a time range between the hot store and the lake.

`split` asks the hot store (`store.hot`) once for a range: the hours it holds answer from it,
every other stretch of the range is left to the lake (`Split.lake`, as `[start, end)` spans),
so a caller reads the lake only where it must and merges the two. With `store.enabled:
false`, or when the hot store cannot be reached, the whole range goes to the lake: a failure
is logged once, counted (`counters()`), and for `store.retry_s` no read tries the hot store
again, so an outage costs one timeout, not one per call.

Unlike the rest of `mad.query`, the hot store's connection is kept between calls (one per
configured store), since a connection would cost more than the read it serves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mad.config import Settings
from mad.hotstore import hot_url, open_hot
from mad.hotstore.backends import HOUR, HotStore, HotStoreDown, decode_many

log = logging.getLogger(__name__)

Span = tuple[datetime, datetime]
_lock = threading.RLock()
_stores: dict[str, HotStore] = {}
_down_until: dict[str, float] = {}
_counts = {"hot_reads": 0, "lake_reads": 0, "hot_failures": 0}


@dataclass
class Split:
    """The rows the hot store gave (decoded, in time order, all within the range asked) and
    the spans the lake must answer (in time order; empty when the hot store held the whole
    range)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    lake: list[Span] = field(default_factory=list)
    source: str = "lake"  # "hot", "lake" or "hot+lake"
    error: str | None = None


def counters() -> dict[str, int]:
    """Reads answered (partly) by the hot store, reads that went to the lake alone, and
    failures to reach the hot store, in this process."""
    with _lock:
        return dict(_counts)


def hot_store(settings: Settings) -> HotStore | None:
    """The configured hot store, kept for later calls (None with `store.enabled: false`)."""
    if not settings.store.enabled:
        return None
    ident = f"{settings.data_dir}|{settings.store.model_dump_json()}"
    with _lock:
        found = _stores.get(ident)
        if found is None:
            found = _stores[ident] = open_hot(settings)
        return found


def split(settings: Settings, dataset: str, window: str, start: datetime, end: datetime,
          keys: Sequence[str] | Callable[[str], bool] | None = None) -> Split:
    """The hot store's rows of `[start, end)` (of the series `keys`, or those a predicate
    picks, or all) and the spans the lake must read."""
    hot = hot_store(settings)
    whole = Split(lake=[(start, end)])
    if hot is None:
        return _count(whole)
    ident = hot_url(hot)
    with _lock:
        if _down_until.get(ident, 0.0) > time.monotonic():
            return _count(whole)
    try:
        names = keys if keys is None or not callable(keys) else [
            k for k in hot.keys(dataset, window) if keys(k)]
        if names is not None and not names:
            return _count(whole)
        held = hot.read(dataset, window, start.timestamp(), end.timestamp(), names)
    except HotStoreDown as err:
        with _lock:
            first = _down_until.get(ident) is None
            _down_until[ident] = time.monotonic() + settings.store.retry_s
            _counts["hot_failures"] += 1
        if first:
            log.warning("%s; reading the lake instead", err)
        return _count(Split(lake=[(start, end)], error=str(err)))
    with _lock:
        if _down_until.pop(ident, None) is not None:
            log.warning("hot store %s answers again", ident)
    spans = _uncovered(start, end, held.hours)
    rows = decode_many(dataset, held.rows)
    source = "lake" if not held.hours else "hot" if not spans else "hot+lake"
    return _count(Split(rows=rows, lake=spans, source=source))


def unheld(rows: list[dict[str, Any]], hidden: Mapping[str, object]) -> list[dict[str, Any]]:
    """`rows` without those of the days the quality gate hides (`Held.days`)."""
    if not hidden:
        return rows
    return [r for r in rows if r["window_start"].date().isoformat() not in hidden]


def merged(sources: list[str]) -> str:
    """One source for a read made of several splits."""
    found = set(sources)
    return found.pop() if len(found) == 1 else "hot+lake"


def _count(found: Split) -> Split:
    with _lock:
        _counts["hot_reads" if found.source != "lake" else "lake_reads"] += 1
    return found


def _uncovered(start: datetime, end: datetime, hours: dict[int, str]) -> list[Span]:
    """The stretches of `[start, end)` outside the held hours."""
    spans: list[tuple[float, float]] = []
    t, stop = start.timestamp(), end.timestamp()
    cursor = t
    hour = int(t // HOUR * HOUR)
    while hour < stop:
        if hour in hours:
            if cursor < hour:
                spans.append((cursor, hour))
            cursor = max(cursor, hour + HOUR)
        hour += HOUR
    if cursor < stop:
        spans.append((cursor, stop))
    return [(datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
            for a, b in spans if b > a]


def forget() -> None:
    """Close the kept connections (tests; a settings change)."""
    with _lock:
        for found in _stores.values():
            found.close()
        _stores.clear()
        _down_until.clear()
