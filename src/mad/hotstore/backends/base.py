"""The hot store's Protocol, its registry, and the rows it holds.

A hot store keeps the newest hours (`store.horizon_h`, 24 by default) of two lake datasets,
`aggregates` and `anomalies`, per window size, as the lake has them. It knows nothing of the
lake: `mad.hotstore.feed` copies what changed, one hour at a time, and the read functions
(`mad.query`) ask it first. Its unit is the **hour**: an hour is either held whole, with the
fingerprint of the lake rows it was copied from, or not held at all (then the lake answers
for it). Replacing hours is atomic: a reader sees an hour before or after a replace, never
half of one.

Rows travel as bytes: an orjson list of the `COLUMNS` values in order, `window_start` as
epoch seconds (the feed writes them, `decode_many` reads them back), filed under a series key:
`service/series` for aggregates, the empty key for anomalies (one list per window size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from mad.errors import TransientError
from mad.registry import Registry

DATASETS = ("aggregates", "anomalies")
COLUMNS: dict[str, tuple[str, ...]] = {
    "aggregates": ("window_start", "service", "series", "count", "avg", "min", "max",
                   "stddev", "p50", "p95", "p99", "outlier_score", "outlier"),
    "anomalies": ("window_start", "window", "service", "series", "stat", "score", "severity",
                  "observed", "expected", "lower", "upper", "detectors"),
}
HOUR = 3600


class HotStoreDown(TransientError):
    """The hot store cannot be reached or answered wrongly: readers use the lake instead,
    the feed retries on its next pass."""


@dataclass
class HourRows:
    """What one hour of one dataset and window size holds: the rows (series key, window
    start in epoch seconds, encoded row) and the fingerprint of the lake rows they are."""

    hour: int
    fingerprint: str
    rows: list[tuple[str, float, bytes]] = field(default_factory=list)


@dataclass
class Held:
    """A read's answer: the hours held (hour start -> fingerprint) and the encoded rows of
    the range asked, from those hours only."""

    hours: dict[int, str]
    rows: list[bytes]


class HotStore(Protocol):
    """A hot store backend (`store.hot.backend`: `embedded` or `redis`)."""

    name: str

    def hours(self, dataset: str, window: str) -> dict[int, str]:
        """Every hour held: its start (epoch seconds) -> fingerprint."""
        ...

    def replace(self, dataset: str, window: str, hours: Sequence[HourRows],
                keep_from: int) -> None:
        """In one atomic step: each of `hours` holds exactly its rows afterwards, and every
        hour before `keep_from` is dropped with its rows."""
        ...

    def read(self, dataset: str, window: str, start: float, end: float,
             keys: Sequence[str] | None = None) -> Held:
        """The rows with a window start in `[start, end)` (of the series `keys`, or all),
        with the hours held."""
        ...

    def keys(self, dataset: str, window: str) -> list[str]:
        """The series keys held."""
        ...

    def wipe(self) -> None:
        """Drop everything this store holds."""
        ...

    def ping(self) -> None:
        """Return if reachable, else raise HotStoreDown."""
        ...

    def close(self) -> None:
        ...


HOT_STORES = Registry[HotStore]("hot store", "mad.hotstore.backends", setting="store.hot")


def decode_many(dataset: str, rows: Sequence[bytes]) -> list[dict[str, Any]]:
    """Stored rows back as dicts, `window_start` as an aware UTC datetime (one JSON parse
    for all; one datetime per distinct start)."""
    if not rows:
        return []
    names = COLUMNS[dataset]
    moments: dict[float, datetime] = {}
    out = []
    for values in orjson.loads(b"[" + b",".join(rows) + b"]"):
        row = dict(zip(names, values, strict=True))
        ts = row["window_start"]
        moment = moments.get(ts)
        if moment is None:
            moment = moments[ts] = datetime.fromtimestamp(ts, UTC)
        row["window_start"] = moment
        out.append(row)
    return out
