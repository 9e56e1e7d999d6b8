"""Leases in the state database: which process owns a piece of work, until when.

A lease is a row of `leases` (name, owner, expires). `LeaseStore.acquire` takes or renews one
in one transaction; a conditional update makes two processes that try at once get one
winner. Detection leases a window size or a shard of series (`detect:<window>...`), the raw
writer a stream shard (`writer:<consumer>:<shard>`).

`Lease` is one process's handle on one name: its owner is `host:pid:id`, and a lease whose
holder was a process of this host that no longer runs (`gone`) is taken over at once, so a
restart after SIGKILL needs no wait; one held from another host is taken over once it expires.

`fair_share(units, live)` is how many of `units` leases one of `live` workers should hold, so
that N workers sharing a set of shards end up with about units/N each.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Column, Engine, String, Table, and_, select
from sqlalchemy.exc import IntegrityError

from mad.errors import TransientError
from mad.state.db import UtcDateTime, metadata

leases = Table(
    "leases",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("owner", String(256), nullable=False),
    Column("expires", UtcDateTime, nullable=False),
)


class LeaseBusy(TransientError):
    """Another process holds the lease."""


class Held(NamedTuple):
    name: str
    owner: str
    expires: datetime


class LeaseStore:
    """Reads and writes `leases`; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def acquire(self, name: str, owner: str, ttl_s: float,
                stale: Callable[[str], bool] = lambda holder: False) -> str | None:
        """Take or renew the lease `name` for `owner` until `ttl_s` from now. Returns None
        when `owner` holds it, else the holder. A lease past its expiry, or whose holder
        `stale(holder)` says is gone, is taken over."""
        now = datetime.now(UTC)
        until = now + timedelta(seconds=ttl_s)
        q = select(leases.c.owner, leases.c.expires).where(leases.c.name == name)
        try:
            with self.engine.begin() as conn:
                row = conn.execute(q).first()
                if row is None:
                    conn.execute(leases.insert().values(name=name, owner=owner, expires=until))
                    return None
                holder = str(row.owner)
                if holder != owner and row.expires >= now and not stale(holder):
                    return holder
                taken = conn.execute(leases.update().where(and_(
                    leases.c.name == name, leases.c.owner == holder)).values(
                    owner=owner, expires=until)).rowcount
                return None if taken == 1 else holder
        except IntegrityError:  # another process inserted it first
            with self.engine.connect() as conn:
                row = conn.execute(q).first()
            return str(row.owner) if row is not None else "another process"

    def release(self, name: str, owner: str) -> None:
        """Give up `name` if `owner` holds it (else nothing happens)."""
        with self.engine.begin() as conn:
            conn.execute(leases.delete().where(and_(leases.c.name == name,
                                                    leases.c.owner == owner)))

    def held(self, prefix: str) -> list[Held]:
        """The leases whose name starts with `prefix` and that have not expired, by name."""
        now = datetime.now(UTC)
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = (select(leases.c.name, leases.c.owner, leases.c.expires)
             .where(leases.c.name.like(like, escape="\\"), leases.c.expires >= now)
             .order_by(leases.c.name))
        with self.engine.connect() as conn:
            return [Held(str(r.name), str(r.owner), r.expires) for r in conn.execute(q)]


class Lease:
    """One process's handle on the lease `name` (see the module doc)."""

    def __init__(self, store: LeaseStore, name: str, ttl_s: float,
                 owner: str | None = None) -> None:
        self.store = store
        self.name = name
        self.ttl_s = ttl_s
        self.owner = owner or new_owner()

    def try_hold(self) -> str | None:
        """Take or renew the lease; None when held, else who holds it."""
        return self.store.acquire(self.name, self.owner, self.ttl_s, stale=gone)

    def hold(self) -> None:
        """Take or renew the lease; raises LeaseBusy naming the holder when another has it."""
        holder = self.try_hold()
        if holder is not None:
            raise LeaseBusy(f"{self.name} is held by {holder} (host:pid)")

    def release(self) -> None:
        self.store.release(self.name, self.owner)


def new_owner() -> str:
    """This process's name as a lease owner: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_pid(owner: str) -> int | None:
    """The pid in an owner `host:pid:id`, or None."""
    pid = owner.partition(":")[2].partition(":")[0]
    return int(pid) if pid.isdigit() else None


def gone(holder: str) -> bool:
    """True when `holder` (`host:pid:id`) is a process of this host that no longer runs."""
    host = holder.partition(":")[0]
    pid = owner_pid(holder)
    if host != socket.gethostname() or pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def fair_share(units: int, live: int) -> int:
    """How many of `units` leases each of `live` workers (at least 1) should hold."""
    return math.ceil(units / max(1, live))
