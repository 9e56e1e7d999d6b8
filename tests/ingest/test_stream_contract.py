"""One contract for every stream backend: the promises of the `Stream` Protocol, and of the
optional `StreamMonitor` where a backend offers one, checked on each name `STREAMS.names()`
lists.

Every backend is built by name with its default options, from a context any backend can
use: a fresh data folder, a fresh SQLite state database, and a fresh AWS account on the
session's moto server (an STS AssumeRole into a new account id gives an empty namespace, so
default stream names never meet between tests). A new backend is checked here as soon as it
registers itself; it needs no test code.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mad.config import AwsSettings
from mad.errors import ConfigError, TerminalError
from mad.ingest.streams import (
    STREAMS,
    Lag,
    Stream,
    StreamContext,
    StreamMonitor,
    StreamRecord,
)

SERVICES = ["payments", "accounts", "cards", "loans", "auth", "notifications"]
CONSUMER = "writer"
UNCOMMITTED = "audit"  # named in the context, never commits
TOO_LARGE = 64 * 2**20  # key + payload no backend takes as one record

Open = Callable[[], Stream]


def fresh_account(endpoint: str) -> AwsSettings:
    """Credentials of a new, empty AWS account on the moto server."""
    import boto3

    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    account = random.randrange(10**11, 10**12)
    role = f"arn:aws:iam::{account}:role/stream-contract"
    creds = sts.assume_role(RoleArn=role, RoleSessionName="stream-contract")["Credentials"]
    return AwsSettings(endpoint_url=endpoint, region="us-east-1",
                       access_key_id=creds["AccessKeyId"],
                       secret_access_key=creds["SecretAccessKey"])


@pytest.fixture(params=STREAMS.names())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_stream(backend: str, tmp_path: Path, moto_url: str) -> Iterator[Open]:
    """Opens the backend (as many times as asked) on one context; closes all at the end."""
    context = StreamContext(data_dir=tmp_path / "data",
                            state_url=f"sqlite:///{tmp_path / 'state.db'}",
                            consumers=(CONSUMER, UNCOMMITTED), aws=fresh_account(moto_url))
    opened: list[Stream] = []

    def open_() -> Stream:
        opened.append(STREAMS.create(backend, context=context))
        return opened[-1]

    yield open_
    for stream in opened:
        stream.close()


def events(n: int) -> list[tuple[str, bytes]]:
    """`n` records over the services; each payload holds its key and a per-key counter."""
    counters = dict.fromkeys(SERVICES, 0)
    out = []
    for i in range(n):
        key = SERVICES[i % len(SERVICES)]
        out.append((key, f"{key}:{counters[key]}".encode()))
        counters[key] += 1
    return out


def read_all(stream: Stream, shard: str, after: int | None = None,
             page: int = 70) -> list[StreamRecord]:
    out: list[StreamRecord] = []
    while batch := stream.read(shard, after, page):
        assert len(batch) <= page
        out += batch
        after = batch[-1].position
    return out


def last_by_shard(stream: Stream, acks: list[tuple[str, int]]) -> dict[str, int]:
    return {s: max(p for sh, p in acks if sh == s) for s in stream.shards()
            if any(sh == s for sh, _ in acks)}


# -- the Stream Protocol ---------------------------------------------------------------------


def test_unknown_backend_is_a_clear_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown stream backend 'nosuch'") as err:
        STREAMS.create("nosuch")
    assert all(name in str(err.value) for name in STREAMS.names())


def test_appended_records_read_back_in_order_with_growing_positions(open_stream: Open) -> None:
    stream = open_stream()
    records = events(600)
    acks = stream.append(records)
    assert len(acks) == len(records)
    assert {a.shard for a in acks} <= set(stream.shards())
    key_shard: dict[str, str] = {}
    for (key, _), ack in zip(records, acks, strict=True):
        assert key_shard.setdefault(key, ack.shard) == ack.shard  # a key stays on one shard
    sent = {(a.shard, a.position): r for a, r in zip(acks, records, strict=True)}

    seen: dict[str, list[int]] = {}
    for shard in stream.shards():
        in_order = [a.position for a in acks if a.shard == shard]
        assert in_order == sorted(set(in_order))  # positions grow in append order
        got = read_all(stream, shard)
        assert [r.position for r in got] == in_order
        for r in got:
            assert r.shard == shard and (r.key, r.payload) == sent[(shard, r.position)]
            assert r.appended_at == pytest.approx(time.time(), abs=120)
            key, counter = r.payload.decode().split(":")
            seen.setdefault(key, []).append(int(counter))
    assert sum(len(c) for c in seen.values()) == len(records)
    for key, counters in seen.items():
        assert counters == list(range(len(counters))), f"order of {key}"


def test_read_returns_at_most_limit_records_after_a_position(open_stream: Open) -> None:
    stream = open_stream()
    acks = stream.append([("payments", f"r{i}".encode()) for i in range(10)])
    shard = acks[0].shard
    assert {a.shard for a in acks} == {shard}
    positions = [a.position for a in acks]
    assert [r.payload for r in stream.read(shard, None, 3)] == [b"r0", b"r1", b"r2"]
    assert [r.position for r in stream.read(shard, positions[3], 4)] == positions[4:8]
    assert [r.position for r in stream.read(shard, positions[7], 100)] == positions[8:]
    assert stream.read(shard, positions[-1], 5) == []


def test_commits_are_kept_per_consumer_and_shard(open_stream: Open) -> None:
    stream = open_stream()
    acks = stream.append([("cards", f"c{i}".encode()) for i in range(10)])
    shard, positions = acks[0].shard, [a.position for a in acks]
    for s in stream.shards():
        assert stream.committed(CONSUMER, s) is None and stream.committed("other", s) is None
    stream.commit(CONSUMER, shard, positions[4])
    assert stream.committed(CONSUMER, shard) == positions[4]
    assert stream.committed("other", shard) is None
    stream.commit("other", shard, positions[1])
    stream.commit(CONSUMER, shard, positions[9])
    assert stream.committed(CONSUMER, shard) == positions[9]
    assert stream.committed("other", shard) == positions[1]
    assert all(stream.committed(CONSUMER, s) is None for s in stream.shards() if s != shard)


def test_records_and_commits_survive_close_and_reopen(open_stream: Open) -> None:
    first = open_stream()
    shards = first.shards()
    acks = first.append(events(60))
    tips = last_by_shard(first, [(a.shard, a.position) for a in acks])
    for shard, position in tips.items():
        first.commit(CONSUMER, shard, position)
    stored = {s: [(r.position, r.key, r.payload) for r in read_all(first, s)] for s in shards}
    first.close()

    second = open_stream()
    assert second.shards() == shards
    assert {s: [(r.position, r.key, r.payload) for r in read_all(second, s)]
            for s in shards} == stored
    assert {s: second.committed(CONSUMER, s) for s in tips} == tips
    more = second.append([("payments", b"after-reopen")])[0]
    assert more.position > max((p for p, _, _ in stored[more.shard]), default=-1)
    assert [r.payload for r in second.read(more.shard, tips.get(more.shard), 100)] == [
        b"after-reopen"]


def test_a_record_too_large_is_terminal_and_the_stream_goes_on(open_stream: Open) -> None:
    stream = open_stream()
    with pytest.raises(TerminalError, match="too large"):
        stream.append([("payments", b"x" * TOO_LARGE)])
    ack = stream.append([("payments", b"small")])[0]
    assert [r.payload for r in stream.read(ack.shard, None, 10)] == [b"small"]


def test_an_unknown_shard_is_terminal(open_stream: Open) -> None:
    stream = open_stream()
    with pytest.raises(TerminalError, match="no shard"):
        stream.read("no-such-shard", None, 1)
    with pytest.raises(TerminalError, match="no shard"):
        stream.committed(CONSUMER, "no-such-shard")
    with pytest.raises(TerminalError, match="no shard"):
        stream.commit(CONSUMER, "no-such-shard", 0)


def test_shards_are_stable_and_an_empty_append_stores_nothing(open_stream: Open) -> None:
    stream = open_stream()
    shards = stream.shards()
    assert shards and len(set(shards)) == len(shards)
    assert stream.append([]) == []
    assert all(stream.read(s, None, 10) == [] for s in shards)
    stream.append(events(24))
    assert stream.shards() == shards
    assert isinstance(stream.appends_checked, bool)


# -- the optional StreamMonitor ----------------------------------------------------------------


def monitor_of(stream: Stream) -> StreamMonitor:
    if not isinstance(stream, StreamMonitor):
        pytest.skip("no StreamMonitor: the ingest wiring serves this backend a NullMonitor")
    return stream


def test_monitor_counts_lag_until_the_consumer_commits(open_stream: Open) -> None:
    stream = open_stream()
    monitor = monitor_of(stream)
    records = events(12)
    acks = stream.append(records)
    lag = monitor.lag(CONSUMER)
    assert set(lag) == set(stream.shards())
    assert sum(v.records for v in lag.values()) == len(records)
    assert sum(v.bytes for v in lag.values()) >= sum(len(k) + len(p) for k, p in records)
    assert all(v.age_seconds >= 0 for v in lag.values())
    for shard, position in last_by_shard(stream, [(a.shard, a.position) for a in acks]).items():
        stream.commit(CONSUMER, shard, position)
    assert all(v == Lag(0, 0, 0.0) for v in monitor.lag(CONSUMER).values())


def test_monitor_status_shows_shards_positions_commits_and_lag(
    open_stream: Open, backend: str
) -> None:
    stream = open_stream()
    monitor = monitor_of(stream)
    acks = stream.append(events(30))
    by_shard = {s: [a.position for a in acks if a.shard == s] for s in stream.shards()}
    shard = acks[0].shard
    stream.commit(CONSUMER, shard, by_shard[shard][0])

    status = monitor.status()
    assert status.backend == backend
    assert [row.shard for row in status.shards] == stream.shards()
    assert status.disk_bytes == monitor.disk_bytes() >= 0
    for row in status.shards:
        positions = by_shard[row.shard]
        assert (row.first, row.last) == ((positions[0], positions[-1]) if positions
                                         else (None, None))
        committed = positions[0] if row.shard == shard else None
        assert row.committed[CONSUMER] == committed
        assert row.committed[UNCOMMITTED] is None  # named before it ever commits
        assert row.lag[UNCOMMITTED].records == len(positions)
        assert row.lag[CONSUMER].records == len(positions) - (committed is not None)
