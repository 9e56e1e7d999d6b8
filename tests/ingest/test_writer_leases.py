"""Several raw writers on one 4-shard Kinesis stream (a real moto server), sharing the shards
through leases in one state database (SQLite, and a real PostgreSQL server): the split, a
third writer joining, a lost lease, and `mad ingest status` showing who holds what.

The contract: delivery is at least once (the ETL deduplicates by event_id). No record is
ever lost, each shard is read by one writer at a time, and an orderly hand-over (flush,
commit, then give back) writes nothing twice. Each writer here writes to its own lake
folder, so the test can tell who wrote what; the lake is their union.
"""

from __future__ import annotations

import gzip
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine
from tests.pg_server import postgres_fixture

from mad.config import AwsSettings, WriterSettings, load_settings
from mad.errors import ConfigError
from mad.generate.backfill import run_backfill
from mad.ingest.shard_leases import ShardLeases, shard_holders, shard_lease
from mad.ingest.status import collect, render
from mad.ingest.streams import StreamRecord
from mad.ingest.streams.kinesis import KinesisStream
from mad.ingest.writer import RawWriter, status_rows
from mad.state import open_state
from mad.state.leases import LeaseStore
from mad.stores.local import LocalStore

CONSUMER = "raw-writer"
pg = postgres_fixture()
SETTINGS = WriterSettings(flush_interval_s=3600, gzip=True, read_batch=100)


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """(service, line) of 2 simulated minutes of valid events (unique event_ids)."""
    out = tmp_path_factory.mktemp("backfill")
    settings = load_settings(env={}, overrides={
        "generate.duration": "2m", "generate.rate": 5, "generate.faults.malformed": 0,
        "generate.faults.duplicates": 0})
    run_backfill(settings.generate, out, progress=False)
    got = []
    for line in (out / "events.jsonl").read_bytes().splitlines():
        event = orjson.loads(line)
        got.append((str(event.get("service") or "unknown"), line))
    return got


class Lab:
    """One Kinesis stream and one state database; `writer()` starts another writer."""

    def __init__(self, aws: AwsSettings, tmp_path: Path, state_url: str) -> None:
        self.tmp_path, self.endpoint_url = tmp_path, aws.endpoint_url
        self.name = f"leases-{uuid.uuid4().hex[:8]}"
        self.state_url = state_url
        self.engine: Engine = open_state(self.state_url)
        self.streams: list[KinesisStream] = []
        self.feed = self.stream()
        self.writers: list[RawWriter] = []

    def stream(self) -> KinesisStream:
        stream = KinesisStream(stream_name=self.name, shards=4, endpoint_url=self.endpoint_url,
                               access_key_id="testing", secret_access_key="testing",
                               state_url=self.state_url, wait_seconds=30)
        self.streams.append(stream)
        return stream

    def writer(self, lease_s: float = 30.0) -> RawWriter:
        n = len(self.writers)
        leases = ShardLeases(lambda: LeaseStore(self.engine), CONSUMER, lease_s)
        writer = RawWriter(self.stream(), LocalStore(self.tmp_path / f"lake{n}"), SETTINGS,
                           shards=leases)
        self.writers.append(writer)
        return writer

    def put(self, events: list[tuple[str, bytes]]) -> None:
        for i in range(0, len(events), 400):
            self.feed.append(events[i:i + 400])

    def every_record(self) -> dict[str, list[StreamRecord]]:
        out = {}
        for shard in self.feed.shards():
            records: list[StreamRecord] = []
            after = None
            while batch := self.feed.read(shard, after, 1000):
                records += batch
                after = batch[-1].position
            out[shard] = records
        return out

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
        self.engine.dispose()


@pytest.fixture
def lab(aws: AwsSettings, tmp_path: Path, state_url: str) -> Iterator[Lab]:
    made = Lab(aws, tmp_path, state_url)
    yield made
    made.close()


def lake_ids(root: Path) -> Counter[str]:
    """How many times each event_id is in the raw files under `root` (every writer's)."""
    found: Counter[str] = Counter()
    for path in root.glob("lake*/md-raw-*/**/part-*.jsonl.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            found[orjson.loads(line)["event_id"]] += 1
    return found


def ids_of(records: list[StreamRecord]) -> set[str]:
    return {orjson.loads(r.payload)["event_id"] for r in records}


def held(writers: list[RawWriter]) -> list[set[str]]:
    """The shards each writer holds; no shard is held by two."""
    sets = [set(w.leases.held) for w in writers]
    for i, a in enumerate(sets):
        for b in sets[i + 1:]:
            assert not a & b, f"shards {a & b} held by two writers"
    return sets


def run_all(writers: list[RawWriter]) -> None:
    """Poll every writer until none reads anything, then write and commit everything."""
    while sum(w.poll() for w in writers):
        held(writers)
    for w in writers:
        w.flush_all()


def test_two_writers_split_the_shards_and_write_every_record_once(
        lab: Lab, events: list[tuple[str, bytes]]) -> None:
    lab.put(events)
    a, b = lab.writer(), lab.writer()
    a.rebalance()  # alone so far: takes every shard
    assert len(a.leases.held) == 4
    b.rebalance()  # counted now, but every shard is held by a live writer
    assert b.leases.held == set()
    a.rebalance()  # gives back the two above its share
    b.rebalance()  # and b takes them
    assert sorted(map(len, held([a, b]))) == [2, 2]
    run_all([a, b])

    every = lab.every_record()
    found = lake_ids(lab.tmp_path)
    assert set(found) == {e for recs in every.values() for e in ids_of(recs)}
    assert set(found.values()) == {1}  # every record once
    for shard, records in every.items():  # each checkpoint is at the shard's last record
        assert lab.feed.committed(CONSUMER, shard) == records[-1].position
    for writer in (a, b):  # each writer wrote exactly the records of its own shards
        mine = set().union(*(ids_of(every[s]) for s in writer.leases.held))
        n = lab.writers.index(writer)
        assert set(ids_in(lab.tmp_path / f"lake{n}")) == mine
    for writer in (a, b):
        writer.release()
    assert LeaseStore(lab.engine).held("writer:") == []


def ids_in(lake: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in lake.glob("md-raw-*/**/part-*.jsonl.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            found[orjson.loads(line)["event_id"]] += 1
    return found


def test_a_third_writer_joining_gets_shards_and_nothing_is_lost(
        lab: Lab, events: list[tuple[str, bytes]]) -> None:
    half = len(events) // 2
    lab.put(events[:half])
    a, b = lab.writer(), lab.writer()
    for w in (a, b, a, b):
        w.rebalance()
    for _ in range(3):  # read some of it: part buffered, none of it written yet
        a.poll()
        b.poll()
    c = lab.writer()
    for w in (c, a, b, c):  # c is counted; the writers above their share give shards back
        w.rebalance()
    assert sorted(map(len, held([a, b, c]))) == [1, 1, 2]
    assert sum(w.stats()["files"] for w in (a, b)) > 0  # what was given back was written first
    lab.put(events[half:])
    run_all([a, b, c])

    found = lake_ids(lab.tmp_path)
    every = lab.every_record()
    assert set(found) == {e for recs in every.values() for e in ids_of(recs)}  # none lost
    assert set(found.values()) == {1}  # an orderly hand-over writes nothing twice
    for shard, records in every.items():
        assert lab.feed.committed(CONSUMER, shard) == records[-1].position


def test_a_lost_lease_drops_the_shards_buffered_records_and_its_checkpoint(
        lab: Lab, events: list[tuple[str, bytes]]) -> None:
    lab.put(events)
    a = lab.writer(lease_s=1.0)  # a short lease, to let it expire in the test
    a.rebalance()
    a.poll()  # one batch of every shard buffered (flush_interval_s is an hour)
    assert a.stats()["open_buffers"] > 0
    before = {s: lab.feed.committed(CONSUMER, s) for s in lab.feed.shards()}
    time.sleep(1.2)  # a stalls longer than its lease: it expires
    b = lab.writer()
    b.rebalance()  # a's leases (and its presence) expired: b takes every shard
    assert len(b.leases.held) == 4
    a.rebalance()  # a finds them lost: its buffered records are dropped, nothing committed
    assert a.leases.held == set()
    assert a.stats()["open_buffers"] == 0 and a.stats()["committed"] == {}
    a.flush_all()
    assert ids_in(lab.tmp_path / "lake0") == Counter()  # a never wrote what it lost
    assert {s: lab.feed.committed(CONSUMER, s) for s in lab.feed.shards()} == before
    run_all([b])
    found = lake_ids(lab.tmp_path)
    every = lab.every_record()
    assert set(found) == {e for recs in every.values() for e in ids_of(recs)}


def test_status_shows_each_shards_writer_and_lease_expiry(
        lab: Lab, events: list[tuple[str, bytes]]) -> None:
    lab.put(events[:50])
    a, b = lab.writer(), lab.writer()
    for w in (a, b, a, b):
        w.rebalance()
    holders = shard_holders(LeaseStore(lab.engine), CONSUMER)
    rows = status_rows(lab.feed, CONSUMER, holders=holders)
    assert len(rows) == 4
    for row in rows:
        owner = next(w.leases.owner for w in (a, b) if row["shard"] in w.leases.held)
        assert owner is not None and row["writer"] == owner.rsplit(":", 1)[0]
        assert row["lease_expires"] is not None
    name = shard_lease(CONSUMER, rows[0]["shard"])
    assert name in {h.name for h in LeaseStore(lab.engine).held("writer:")}
    data = {"stream": {"backend": "kinesis", "disk_bytes": 0, "dropped_records": 0},
            "shards": rows, "writer": None, "lake": "x", "state_error": None,
            "datasets": {}, "errors": {}}
    text = render(data)
    assert "WRITER" in text and rows[0]["writer"] in text
    assert sorted(a.stats()["shards"]) == sorted(a.leases.held)
    settings = load_settings(config_file=None, env={}, overrides={
        "data_dir": str(lab.tmp_path / "data"), "state.url": lab.state_url,
        "ingest.stream.backend": "kinesis", "ingest.stream.kinesis.stream_name": lab.name,
        "aws.endpoint_url": lab.endpoint_url, "aws.access_key_id": "testing",
        "aws.secret_access_key": "testing"})
    shown = {r["shard"]: r["writer"] for r in collect(settings)["shards"]}  # mad ingest status
    assert shown == {r["shard"]: r["writer"] for r in rows}


def test_the_lease_length_is_a_positive_setting() -> None:
    assert WriterSettings().lease_s == 30.0
    assert load_settings(env={"MAD_WRITER__LEASE_S": "5"}).writer.lease_s == 5.0
    with pytest.raises(ConfigError, match="lease_s"):
        load_settings(env={"MAD_WRITER__LEASE_S": "0"})


def test_a_shard_lost_alone_leaves_the_other_shards_lines_in_the_same_buffers(
        lab: Lab, events: list[tuple[str, bytes]]) -> None:
    # Keyed by event_id (as any producer may key them), a service's events spread over every
    # shard, so one buffer holds lines of several shards.
    lab.put([(orjson.loads(line)["event_id"], line) for _, line in events])
    a = lab.writer()
    a.rebalance()
    a.poll()  # one batch of every shard buffered
    buffered = {s: ids_of(lab.feed.read(s, lab.feed.committed(CONSUMER, s), 100))
                for s in lab.feed.shards()}
    assert all(buffered.values())
    before = {s: lab.feed.committed(CONSUMER, s) for s in lab.feed.shards()}
    lost = sorted(a.leases.held)[1]
    store, name = LeaseStore(lab.engine), shard_lease(CONSUMER, lost)
    store.release(name, str(a.leases.owner))  # as if it expired and a writer elsewhere
    assert store.acquire(name, "elsewhere:1:x", 30) is None  # took it
    a.rebalance()  # lost: that one; and with a second writer counted, one shard given back
    assert len(a.leases.held) == 2 and lost not in a.leases.held
    a.flush_all()
    kept = set(lab.feed.shards()) - {lost}
    written = ids_in(lab.tmp_path / "lake0")
    assert set(written.values()) == {1}
    assert set(written) == set().union(*(buffered[s] for s in kept))
    assert lab.feed.committed(CONSUMER, lost) == before[lost]  # never committed again
    assert all(lab.feed.committed(CONSUMER, s) != before[s] for s in kept)
