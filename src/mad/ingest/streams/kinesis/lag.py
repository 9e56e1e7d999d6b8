"""How far a consumer is behind on a Kinesis shard, estimated, since Kinesis counts nothing.

For each shard a probe reads at most `probe_records` records after the committed position
(GetRecords, cached for `ttl` seconds per consumer and shard, dropped on commit). Within that
window records and bytes are exact, and the age is the arrival time of the first unconsumed
record. When more remain, the count is extrapolated from the arrival rate in the window and
MillisBehindLatest; when that rate cannot be measured (the window spans under a second) the
window size is reported, a lower bound. Probes use the shard's read throughput (5 calls/s,
2 MiB/s shared with consumers), hence the cache. The same bounded reads find where a shard
starts and ends for the status table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from mad.ingest.streams.base import Ack, Lag, Position
from mad.ingest.streams.kinesis.pages import MAX_GET_RECORDS, ShardPages

TIP_SCAN_RECORDS = 10 * MAX_GET_RECORDS
"""At most this many records are read to find a shard's newest position for `status`."""


class Scan(NamedTuple):
    """What a bounded read past a position found."""

    records: int
    bytes: int
    first_arrival: float | None
    last_arrival: float | None
    last_position: Position | None
    behind_ms: int
    full: bool  # stopped at the record cap, so more may remain


def estimate_lag(scan: Scan, now: float) -> Lag:
    """Turn a bounded scan into a Lag; see the module docstring for what is estimated."""
    if scan.records == 0 or scan.first_arrival is None or scan.last_arrival is None:
        return Lag(0, 0, 0.0)
    records, nbytes = scan.records, scan.bytes
    span = scan.last_arrival - scan.first_arrival
    if scan.full and scan.behind_ms > 0 and span >= 1.0:
        factor = 1.0 + scan.behind_ms / 1000 / span
        records, nbytes = round(records * factor), round(nbytes * factor)
    return Lag(records, nbytes, max(0.0, now - scan.first_arrival))


class LagProbe:
    """Bounded reads of one stream's shards for lag and status, with the lag cache.

    `on_tip` hears of every position seen at a shard's end, so the adapter learns the
    newest positions without reading for them again.
    """

    def __init__(self, pages: ShardPages, probe_records: int, ttl: float,
                 on_tip: Callable[[Iterable[Ack]], None]) -> None:
        self.probe_records, self.ttl = probe_records, ttl
        self._pages, self._on_tip = pages, on_tip
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, str], tuple[Lag, float]] = {}

    def cached(self, consumer: str, shard: str) -> Lag | None:
        """The lag measured less than `ttl` seconds ago, if any."""
        with self._lock:
            found = self._lags.get((consumer, shard))
        if found is None or time.monotonic() - found[1] >= self.ttl:
            return None
        return found[0]

    def forget(self, consumer: str, shard: str) -> None:
        """Drop the cached lag (the consumer just committed)."""
        with self._lock:
            self._lags.pop((consumer, shard), None)

    def lag(self, consumer: str, shard: str, committed: Position | None) -> Lag:
        """The cached lag, or a fresh estimate from a probe after `committed`."""
        lag = self.cached(consumer, shard)
        if lag is not None:
            return lag
        started = time.monotonic()
        lag = estimate_lag(self.scan(shard, committed, self.probe_records), time.time())
        with self._lock:
            self._lags[(consumer, shard)] = (lag, started)
        return lag

    def scan(self, shard: str, after: Position | None, cap: int) -> Scan:
        """Read up to `cap` records after `after` (without touching the read iterators)."""
        count = nbytes = behind = 0
        first_arrival = last_arrival = None
        last: Position | None = None
        iterator: str | None = None
        while count < cap:
            start = after if last is None else last
            records, iterator, behind = self._pages.get(
                shard, start, iterator, min(cap - count, MAX_GET_RECORDS)
            )
            if not records:
                break
            for r in records:
                nbytes += len(r["Data"]) + len(r["PartitionKey"].encode())
            count += len(records)
            arrivals = [r["ApproximateArrivalTimestamp"].timestamp() for r in records]
            first_arrival = arrivals[0] if first_arrival is None else first_arrival
            last_arrival = arrivals[-1]
            last = int(records[-1]["SequenceNumber"])
            if not behind or iterator is None:
                break
        if last is not None and not behind:
            self._on_tip([Ack(shard, last)])
        return Scan(count, nbytes, first_arrival, last_arrival, last, behind, count >= cap)

    def first_position(self, shard: str) -> Position | None:
        """The oldest retained position of `shard` (None when it holds nothing)."""
        records, _, _ = self._pages.get(shard, None, None, 1)
        return int(records[0]["SequenceNumber"]) if records else None

    def last_position(self, shard: str, first: Position | None,
                      committed: Iterable[Position | None], tip: Position | None
                      ) -> Position | None:
        """The newest position: `tip` (known from appends and reads) when it is past the
        furthest commit, else found by reading from there to the end (at most
        `TIP_SCAN_RECORDS` records)."""
        if first is None:
            return None
        start = max((c for c in committed if c is not None), default=None)
        if tip is not None and tip >= (first if start is None else start):
            return tip
        scan = self.scan(shard, start, TIP_SCAN_RECORDS)
        if scan.last_position is not None:
            return scan.last_position
        return first if start is None else max(first, start)
