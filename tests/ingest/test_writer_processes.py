"""Two `mad ingest writer` processes on one 4-shard Kinesis stream (a real moto server),
sharing a SQLite state database and a local lake: they split the shards, one is SIGKILLed
mid-run, the survivor takes its shards over at once (a dead process of this host needs no
lease expiry), and every record put is in the lake at the end (at least once: a file the
killed writer wrote but did not commit is written again)."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import orjson
import pytest
from tests.conftest import stop_process
from tests.runtime.helpers import wait_for

from mad.config import AwsSettings, load_settings
from mad.generate.backfill import run_backfill
from mad.ingest.shard_leases import shard_holders
from mad.ingest.streams.kinesis import KinesisStream
from mad.state import open_state
from mad.state.leases import LeaseStore, owner_pid

CONSUMER = "raw-writer"
T = TypeVar("T")


def lake_ids(lake: Path) -> set[str]:
    found = set()
    for path in lake.glob("md-raw-*/**/part-*.jsonl.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            found.add(orjson.loads(line)["event_id"])
    return found


def start_writer(env: dict[str, str], data: Path, log: Path) -> subprocess.Popen[bytes]:
    """`mad ingest writer` as an operator starts it, with its own data folder."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mad.cli", "ingest", "writer"],
            env={**env, "MAD_DATA_DIR": str(data)}, stdout=out, stderr=subprocess.STDOUT)


def test_a_killed_writers_shards_are_taken_over_and_nothing_is_lost(
        aws: AwsSettings, tmp_path: Path) -> None:
    name = f"procs-{uuid.uuid4().hex[:8]}"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    lake = tmp_path / "lake"
    env = {**os.environ, "MAD_STATE__URL": state_url, "MAD_LAKE__URL": str(lake),
           "MAD_INGEST__STREAM__BACKEND": "kinesis",
           "MAD_INGEST__STREAM__KINESIS__STREAM_NAME": name,
           "MAD_AWS__ENDPOINT_URL": str(aws.endpoint_url),
           "MAD_AWS__ACCESS_KEY_ID": "testing", "MAD_AWS__SECRET_ACCESS_KEY": "testing",
           "MAD_WRITER__FLUSH_INTERVAL_S": "0.5", "MAD_WRITER__LEASE_S": "6",
           "MAD_LOG_LEVEL": "INFO"}
    backfill = tmp_path / "backfill"
    settings = load_settings(env={}, overrides={
        "generate.duration": "3m", "generate.rate": 5, "generate.faults.malformed": 0})
    run_backfill(settings.generate, backfill, progress=False)
    lines = (backfill / "events.jsonl").read_bytes().splitlines()
    events = [(str(orjson.loads(line).get("service") or "unknown"), line) for line in lines]
    thirds = [events[i * len(events) // 3:(i + 1) * len(events) // 3] for i in range(3)]

    feed = KinesisStream(stream_name=name, shards=4, endpoint_url=aws.endpoint_url,
                         access_key_id="testing", secret_access_key="testing",
                         state_url=state_url, wait_seconds=30)
    engine = open_state(state_url)
    leases = LeaseStore(engine)
    procs: list[subprocess.Popen[bytes]] = []

    def put(batch: list[tuple[str, bytes]]) -> None:
        for i in range(0, len(batch), 400):
            feed.append(batch[i:i + 400])

    def holders() -> dict[str, int | None]:
        return {shard: owner_pid(h.owner) for shard, h in shard_holders(leases,
                                                                       CONSUMER).items()}

    def when(check: Callable[[], T], what: str) -> T:
        for proc in procs:
            if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                pytest.fail(f"a writer exited with {proc.returncode}")
        return wait_for(check, limit_s=120, what=what)

    try:
        for n in range(2):
            procs.append(start_writer(env, tmp_path / f"data{n}", tmp_path / f"writer{n}.log"))
        pids = {p.pid for p in procs}
        split = when(lambda: (h := holders()) and len(h) == 4 and set(h.values()) == pids
                     and sorted(list(h.values()).count(p) for p in pids) == [2, 2] and h,
                     "the two writers to split the shards 2/2")
        assert set(split) == set(feed.shards())
        put(thirds[0])
        when(lambda: ids(thirds[0]) <= lake_ids(lake), "the first third")
        put(thirds[1])
        victim, survivor = procs
        victim.send_signal(signal.SIGKILL)  # mid-run: the second third is being written
        victim.wait(30)
        when(lambda: set(holders().values()) == {survivor.pid} and len(holders()) == 4,
             "the survivor to take every shard")
        put(thirds[2])
        when(lambda: ids(events) <= lake_ids(lake), "every record in the lake")
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(60) == 0
        assert ids(events) <= lake_ids(lake)  # no record lost
        assert holders() == {}  # the survivor gave its leases back
        for shard in feed.shards():  # and committed every shard to its end
            records, after = [], None
            while batch := feed.read(shard, after, 1000):
                records += batch
                after = batch[-1].position
            assert feed.committed(CONSUMER, shard) == (records[-1].position if records
                                                       else None)
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop_process(proc)
        feed.close()
        engine.dispose()


def ids(events: list[tuple[str, bytes]]) -> set[str]:
    return {orjson.loads(line)["event_id"] for _, line in events}
