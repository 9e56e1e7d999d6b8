"""Detection shards: the series of one window size split over several workers.

With `detect.shards: N` (> 1) every series belongs to shard `crc32(service NUL series) % N`,
a stable hash, so a series stays on its shard across restarts and hosts. Each shard is a
lease in the state database (`detect:<window>:shard:s<k>of<N>`). Each worker also holds a
presence lease (`detect:<window>:worker:<owner>`), renewed at every claim, so the others count
it before it holds any shard. A worker holds about N / live-workers shards (`fair_share`),
takes a free or expired one (or one whose holder was a
process of this host that no longer runs) up to its share, and gives one back above it, so a
second `mad detect run --watch` started later gets half the work. A shard's scorer states,
watermarks and "complete to" (the newest window start up to which it has scored everything
the watermark allowed) are saved under its lease; its anomalies go to files of its own
(`md-anomalies/date=/part-<window>-s<k>of<N>.parquet`), so two workers never rewrite each
other's rows.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

from mad import lake
from mad.detect.lease import DetectLease
from mad.state.leases import LeaseStore, fair_share, gone

log = logging.getLogger(__name__)


def shard_of(service: str, series: str, shards: int) -> int:
    """The shard of a series, in 0..shards-1 (stable across processes and versions)."""
    return zlib.crc32(f"{service}\0{series}".encode()) % shards


def lease_prefix(window: str) -> str:
    return f"detect:{window}:"


def shard_lease(window: str, shard: int, shards: int) -> str:
    return f"{lease_prefix(window)}shard:{lake.shard_name(shard, shards)}"


def incidents_lease(window: str) -> str:
    return f"{lease_prefix(window)}incidents"


@dataclass
class Claim:
    """What one claim changed: the shards this worker holds now, gained and lost, and those
    above its fair share (still held: save their state, then `release` them)."""

    held: set[int] = field(default_factory=set)
    gained: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    surplus: set[int] = field(default_factory=set)


class ShardLeases:
    """This worker's leases on the shards of one window size."""

    def __init__(self, store: LeaseStore, window: str, shards: int, ttl_s: float,
                 owner: str) -> None:
        self.store, self.window, self.shards, self.ttl_s = store, window, shards, ttl_s
        self.owner = owner
        self.held: set[int] = set()

    def _lease(self, shard: int) -> DetectLease:
        return DetectLease(self.store, shard_lease(self.window, shard, self.shards),
                           self.ttl_s, owner=self.owner)

    def claim(self, take: bool = True) -> Claim:
        """Renew what is held, take free shards up to the fair share (unless not `take`:
        between batches of a pass, whose earlier days a new shard would miss), name those
        above it."""
        before = set(self.held)
        self.store.acquire(self._presence(), self.owner, self.ttl_s)
        leases = self.store.held(lease_prefix(self.window))
        holders = {h.name: h.owner for h in leases if ":shard:" in h.name}
        live = {h.owner for h in leases if ":worker:" in h.name and not gone(h.owner)}
        live |= {o for o in holders.values() if not gone(o)} | {self.owner}
        share = fair_share(self.shards, len(live))
        held: set[int] = set()
        for shard in sorted(before):  # renew first: what is held stays held
            if self._lease(shard).try_hold() is None:
                held.add(shard)
        for shard in range(self.shards if take else 0):
            if len(held) >= share:
                break
            name = shard_lease(self.window, shard, self.shards)
            if shard in held or (name in holders and holders[name] in live):
                continue
            if self._lease(shard).try_hold() is None:
                held.add(shard)
        surplus = set(sorted(held)[share:])  # above the share (another worker started)
        self.held = held
        return Claim(set(held), held - before, before - held, surplus)

    def busy(self) -> str | None:
        """The live holder of the whole window size's lease (`detect:<window>`, taken by an
        unsharded runner), or None."""
        whole = f"detect:{self.window}"
        for h in self.store.held(whole):
            if h.name == whole and h.owner != self.owner and not gone(h.owner):
                return h.owner
        return None

    def renew(self) -> set[int]:
        """Renew every held shard; returns (and drops) those another worker took."""
        lost = {s for s in self.held if self._lease(s).try_hold() is not None}
        self.held -= lost
        return lost

    def release(self, shards: set[int] | None = None) -> None:
        """Give up `shards` (None: every shard and the presence lease: the worker stops)."""
        for shard in sorted(self.held if shards is None else shards & self.held):
            self._lease(shard).release()
            self.held.discard(shard)
        if shards is None:
            self.store.release(self._presence(), self.owner)

    def _presence(self) -> str:
        return f"{lease_prefix(self.window)}worker:{self.owner}"
