"""Which shards of the stream a raw writer reads, when several writers share one stream.

`AllShards` (no leases): the writer reads every shard. That is the embedded stream, read by
one process per data folder (`one_writer_lock`), and a writer built without a state database.

`ShardLeases`: the writers of consumer C share the shards through leases in the state
database (`mad.state.leases`). A writer holds `writer:C:<shard>` for each shard it reads,
and a presence lease `writer:C:worker:<owner>` so that the others count it before it holds
any shard. About every `lease_s / 3` (every 2 s at most while it holds fewer than its share)
`balance` renews what it holds (a shard now held by another owner is lost), counts the live
writers (the distinct owners under `writer:C:`, less those of a process of this host that no
longer runs, plus itself), takes free or expired shards, or those of a dead local process,
up to its share, and names the shards above its share: the writer flushes and commits those,
then gives them back (`release`), so a writer started later gets work.

A writer's share is at most `fair_share(shards, live)`; the `shards % live` shares of one
more go to the first owners in name order, so 4 shards on 3 writers are held 2/1/1, not 2/2/0.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from mad.errors import TransientError
from mad.ingest.streams import Stream
from mad.state.leases import Held, LeaseStore, fair_share, gone, new_owner

log = logging.getLogger(__name__)

T = TypeVar("T")

HUNGRY_CHECK_S = 2.0
"""How often a writer that holds fewer shards than its share looks again, at most."""


class LeasesUnavailable(TransientError):
    """The state database holding the shard leases cannot be read or written now."""


def lease_prefix(consumer: str) -> str:
    return f"writer:{consumer}:"


def shard_lease(consumer: str, shard: str) -> str:
    """The lease name of one shard of consumer `consumer`."""
    return f"{lease_prefix(consumer)}{shard}"


def presence_lease(consumer: str, owner: str) -> str:
    return f"{lease_prefix(consumer)}worker:{owner}"


def holder_name(owner: str) -> str:
    """An owner `host:pid:id` as people read it: `host:pid`."""
    return owner.rpartition(":")[0] if owner.count(":") >= 2 else owner


@dataclass
class Change:
    """What one `balance` found: shards lost to another writer (their buffered records must
    be dropped, never committed) and shards above the share (flush, commit, `release`)."""

    lost: list[str] = field(default_factory=list)
    surplus: list[str] = field(default_factory=list)


class ShardChoice(Protocol):
    """What the raw writer asks about the shards it reads."""

    owner: str | None
    held: set[str]

    def due(self) -> bool:
        """Time to `balance` again."""
        ...

    def fresh(self) -> bool:
        """The held leases were renewed recently enough to commit under them."""
        ...

    def balance(self, shards: list[str]) -> Change:
        ...

    def renew(self) -> list[str]:
        """Renew the held leases; returns (and forgets) those another writer holds now."""
        ...

    def release(self, shards: Iterable[str] | None = None) -> None:
        """Give up `shards` (None: all, and the presence: the writer stops)."""
        ...


class AllShards:
    """Every shard of the stream, no leases (see the module docstring)."""

    owner: str | None = None

    def __init__(self, stream: Stream) -> None:
        self.held = set(stream.shards())

    def due(self) -> bool:
        return False

    def fresh(self) -> bool:
        return True

    def balance(self, shards: list[str]) -> Change:
        return Change()

    def renew(self) -> list[str]:
        return []

    def release(self, shards: Iterable[str] | None = None) -> None:
        return None


class ShardLeases:
    """This writer's leases on the shards of consumer `consumer` (see the module docstring).

    `open_store` opens the lease store on first use (the state database may be down when the
    writer starts); database errors are raised as `LeasesUnavailable`, which the writer
    retries like any transient failure."""

    def __init__(self, open_store: Callable[[], LeaseStore], consumer: str, ttl_s: float,
                 owner: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._open = open_store
        self._store: LeaseStore | None = None
        self.consumer, self.ttl_s, self.clock = consumer, ttl_s, clock
        self.owner: str | None = owner or new_owner()
        self._me = self.owner
        self.held: set[str] = set()
        self._checked_at = -math.inf
        self._renewed_at = -math.inf
        self._hungry = True

    @property
    def interval_s(self) -> float:
        """Seconds between two renewals."""
        return self.ttl_s / 3

    def due(self) -> bool:
        wait = min(self.interval_s, HUNGRY_CHECK_S) if self._hungry else self.interval_s
        return self.clock() - self._checked_at >= wait

    def fresh(self) -> bool:
        return self.clock() - self._renewed_at < self.ttl_s / 2

    def balance(self, shards: list[str]) -> Change:
        self._checked_at = self.clock()
        change = Change(lost=self.renew())
        store = self._lease_store()
        me = self._me
        rows = self._call(store.held, lease_prefix(self.consumer))
        names = {shard_lease(self.consumer, s): s for s in shards}
        holders = {names[h.name]: h.owner for h in rows if h.name in names}
        live = sorted(_live(rows) | {me})
        target = _share(len(shards), live, me)
        for shard in shards:
            if len(self.held) >= target:
                break
            holder = holders.get(shard)
            if shard in self.held or (holder is not None and holder != me
                                      and not gone(holder)):
                continue
            name = shard_lease(self.consumer, shard)
            if self._call(store.acquire, name, me, self.ttl_s, stale=gone) is None:
                self.held.add(shard)
                log.info("raw writer %s: took shard %s", me, shard)
        change.surplus = [s for s in shards if s in self.held][target:]
        self._hungry = len(self.held) < target
        return change

    def renew(self) -> list[str]:
        store = self._lease_store()
        me = self._me
        self._call(store.acquire, presence_lease(self.consumer, me), me, self.ttl_s)
        lost = []
        for shard in sorted(self.held):
            name = shard_lease(self.consumer, shard)
            holder = self._call(store.acquire, name, me, self.ttl_s, stale=gone)
            if holder is not None:
                lost.append(shard)
                log.warning("raw writer %s: shard %s is held by %s now; its unwritten records "
                            "are left to it", me, shard, holder)
        self.held -= set(lost)
        self._renewed_at = self._checked_at = self.clock()
        return lost

    def release(self, shards: Iterable[str] | None = None) -> None:
        store = self._lease_store()
        me = self._me
        for shard in sorted(self.held if shards is None else set(shards) & self.held):
            self._call(store.release, shard_lease(self.consumer, shard), me)
            self.held.discard(shard)
            log.info("raw writer %s: gave back shard %s", me, shard)
        if shards is None:
            self._call(store.release, presence_lease(self.consumer, me), me)

    def _lease_store(self) -> LeaseStore:
        if self._store is None:
            self._store = self._call(self._open)
        return self._store

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as err:
            raise LeasesUnavailable(f"shard leases in the state database: "
                                    f"{str(err).splitlines()[0]}") from err


def _live(rows: list[Held]) -> set[str]:
    """The owners of `rows` that may still run (not a dead process of this host)."""
    return {h.owner for h in rows if not gone(h.owner)}


def _share(units: int, live: list[str], me: str) -> int:
    """How many of `units` shards `me` should hold among the sorted `live` owners: the
    floor, one more for the first `units % len(live)` owners; never above `fair_share`."""
    base, extra = divmod(units, len(live))
    return min(base + (1 if live.index(me) < extra else 0), fair_share(units, len(live)))


def shard_holders(store: LeaseStore, consumer: str) -> dict[str, Held]:
    """The live leases on shards of `consumer`, by shard id (for `mad ingest status`)."""
    prefix = lease_prefix(consumer)
    return {h.name[len(prefix):]: h for h in store.held(prefix)
            if not h.name[len(prefix):].startswith("worker:")}
