"""Leases in the state database, on SQLite and PostgreSQL, with real processes for `gone`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from mad.state import open_state
from mad.state.leases import Lease, LeaseBusy, LeaseStore, fair_share, gone, owner_pid


@pytest.fixture
def engine(state_url: str) -> Iterator[Engine]:
    engine = open_state(state_url)
    yield engine
    engine.dispose()


def test_leases_have_one_holder(engine: Engine) -> None:
    db = LeaseStore(engine)
    assert db.acquire("detect:1m", "a", 60) is None
    assert db.acquire("detect:1m", "a", 60) is None  # renewed
    assert db.acquire("detect:1m", "b", 60) == "a"
    assert db.acquire("detect:5m", "b", 60) is None  # another name
    assert db.acquire("detect:1m", "b", 60, stale=lambda holder: holder == "a") is None
    assert db.acquire("detect:1m", "a", 60) == "b"
    db.release("detect:1m", "a")  # not the holder: nothing happens
    assert db.acquire("detect:1m", "a", 60) == "b"
    db.release("detect:1m", "b")
    assert db.acquire("detect:1m", "a", 0.000001) is None
    assert db.acquire("detect:1m", "b", 60) is None  # a's lease expired


def test_held_lists_live_leases_under_a_prefix_only(engine: Engine) -> None:
    db = LeaseStore(engine)
    db.acquire("writer:raw:shard-1", "a", 60)
    db.acquire("writer:raw:shard-0", "b", 60)
    db.acquire("writer:raw_x:shard-0", "c", 60)  # `_` is not a wildcard
    db.acquire("writer:raw:shard-9", "d", 0.000001)  # expired
    assert [(h.name, h.owner) for h in db.held("writer:raw:")] == [
        ("writer:raw:shard-0", "b"), ("writer:raw:shard-1", "a")]
    assert db.held("writer:raw%") == []


def test_a_lease_of_a_dead_process_is_taken_over_at_once(engine: Engine) -> None:
    store = LeaseStore(engine)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = Lease(store, "detect:1m", 600, owner=f"{socket.gethostname()}:{child.pid}:x")
        theirs.hold()
        mine = Lease(store, "detect:1m", 600)
        with pytest.raises(LeaseBusy, match=f":{child.pid}:x"):
            mine.hold()
    finally:
        child.kill()
        child.wait()
    assert gone(theirs.owner)
    mine.hold()
    assert [h.owner for h in store.held("detect:")] == [mine.owner]
    assert owner_pid(mine.owner) == os.getpid() and not gone(mine.owner)
    assert not gone(f"other-host:{child.pid}:x")  # another host's pid says nothing here


@pytest.mark.parametrize(("units", "live", "share"), [(4, 1, 4), (4, 2, 2), (5, 2, 3),
                                                      (2, 4, 1), (3, 0, 3)])
def test_fair_share(units: int, live: int, share: int) -> None:
    assert fair_share(units, live) == share
