"""The raw writer on real parts: generated events in an embedded stream, written to a local
lake and to S3 on a moto server; flush by size and age; SIGKILL and SIGTERM mid-run."""

from __future__ import annotations

import base64
import gzip
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from tests.conftest import free_port
from tests.disks import SmallDisk, fill_disk

from mad import lake
from mad.catalog import default_service
from mad.config import AwsSettings, Settings, WriterSettings, load_settings
from mad.events import check
from mad.generate.backfill import run_backfill
from mad.ingest.intake import ERRORS_KEY, error_envelope
from mad.ingest.status import collect, render
from mad.ingest.streams import StreamRecord
from mad.ingest.streams.embedded import EmbeddedStream
from mad.ingest.wiring import build_writer, ledger
from mad.ingest.writer import RawWriter, status_rows
from mad.stores import ObjectStore, open_store
from mad.stores.local import LocalStore

SHARDS = 2


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """10 simulated minutes from `mad generate`, malformed lines included, plus extras: a
    pretty-printed (multi-line) valid event and payloads that are JSON but not events."""
    out = tmp_path_factory.mktemp("backfill")
    overrides = {"generate.duration": "10m", "generate.rate": 10,
                 "generate.faults.malformed": 0.01}
    run_backfill(load_settings(env={}, overrides=overrides).generate, out, progress=False)
    got = (out / "events.jsonl").read_bytes().splitlines()
    pretty = orjson.dumps(orjson.loads(got[0]) | {"event_id": "pretty-1"},
                          option=orjson.OPT_INDENT_2)
    return [*got, pretty, b"[1, 2]", b'{"event_id": "x"}', b"", b"\xff\xfe"]


def fill(path: Path, lines: list[bytes]) -> list[StreamRecord]:
    """Append `lines` (keyed by service) and a few intake error envelopes; read them back."""
    with EmbeddedStream(path, shards=SHARDS) as stream:
        for i in range(0, len(lines), 500):
            batch: list[tuple[str, bytes]] = []
            for line in lines[i : i + 500]:
                try:
                    key = str(orjson.loads(line).get("service") or "unknown")
                except (orjson.JSONDecodeError, AttributeError):
                    key = "unknown"
                batch.append((key, line))
            stream.append(batch)
        envelopes = [
            error_envelope("too_large", "record over 256 KiB", b"x" * 40),
            error_envelope("too_deep", "nesting over 16", b"[[[[]]]]", attempts=3),
        ]
        stream.append([(ERRORS_KEY, orjson.dumps(e)) for e in envelopes])
        stream.append([(ERRORS_KEY, b"{not json")])
        records: list[StreamRecord] = []
        for shard in stream.shards():
            after = None
            while got := stream.read(shard, after, 1000):
                records += got
                after = got[-1].position
        return records


def expected(records: list[StreamRecord]) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """(event_id, partition folder) of every valid record, and error codes of the rest."""
    good: Counter[tuple[str, str]] = Counter()
    bad: Counter[str] = Counter()
    for rec in records:
        try:
            event = orjson.loads(rec.payload)
        except orjson.JSONDecodeError:
            bad["bad_error_envelope" if rec.key == ERRORS_KEY else "invalid_json"] += 1
            continue
        if rec.key == ERRORS_KEY:
            bad[event["error_code"]] += 1
        elif (problem := check(event)) is not None:
            bad[problem.reason] += 1
        else:
            service = str(event.get("service") or default_service(event["event_type"]))
            where = lake.raw_partition(event["kind"], service, rec.appended_at)
            good[(event["event_id"], where)] += 1
    return good, bad


def read_lake(store: ObjectStore) -> tuple[Counter[tuple[str, str]], list[dict[str, object]]]:
    """Every line of every file: (event_id, partition folder) of events, and error lines.
    Each file must be a complete `part-*.jsonl.gz` (gzip checks its length and CRC)."""
    good: Counter[tuple[str, str]] = Counter()
    errors: list[dict[str, object]] = []
    for key in store.list():
        part = lake.parse_key(key)  # rejects temp names and anything off the layout
        assert key.endswith(".jsonl.gz")
        rows = gzip.decompress(store.get(key)).splitlines()
        assert rows, key
        for row in rows:
            obj = orjson.loads(row)
            if part.kind is None:
                errors.append(obj)
            else:
                assert obj["kind"] == part.kind
                good[(obj["event_id"], part.path)] += 1
    return good, errors


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "lake"))
    aws: AwsSettings = request.getfixturevalue("aws")
    return open_store(request.getfixturevalue("bucket_url"), aws, create=True)


def test_every_record_lands_once_in_its_partition(
    tmp_path: Path, lines: list[bytes], store: ObjectStore
) -> None:
    records = fill(tmp_path / "stream", lines)
    want_good, want_bad = expected(records)
    assert want_bad["invalid_json"] and want_bad["missing_field"] and want_bad["too_deep"]
    settings = WriterSettings(flush_bytes=64 * 1024, read_batch=300)
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = RawWriter(stream, store, settings)
        writer.drain()
        last = {s: max(r.position for r in records if r.shard == s) for s in stream.shards()}
        assert {s: stream.committed("raw-writer", s) for s in stream.shards()} == last
        stats = writer.stats()
        rows = status_rows(stream, "raw-writer", stats)

    got_good, errors = read_lake(store)
    assert got_good == want_good
    assert Counter(str(e["error_code"]) for e in errors) == want_bad
    raw = {base64.b64decode(str(e["raw_data"])) for e in errors if e["source"] == "raw-writer"}
    assert b"[1, 2]" in raw and b"\xff\xfe" in raw
    assert all({"error_message", "attempts", "received_at"} <= e.keys() for e in errors)

    assert sum(stats["records"].values()) == sum(want_good.values())
    assert stats["errors"] == dict(want_bad)
    assert sum(stats["records"].values()) + sum(stats["errors"].values()) == len(records)
    assert stats["files"] == len(store.list()) and stats["open_buffers"] == 0
    partitions = {lake.parse_key(k).path for k in store.list()}
    assert stats["files"] > len(partitions)  # some partitions were split by size
    assert [(r["committed"], r["lag_records"]) for r in rows] == [(last[s], 0) for s in last]
    assert all(r["files"] == stats["files"] for r in rows)

    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:  # restart: nothing new
        again = RawWriter(stream, store, settings)
        again.drain()
        assert again.stats()["files"] == 0


def test_flush_by_size(tmp_path: Path, lines: list[bytes]) -> None:
    fill(tmp_path / "stream", lines[:300])
    store = LocalStore(tmp_path / "lake")
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = RawWriter(stream, store, WriterSettings(flush_bytes=2048, gzip=False))
        writer.poll()
        by_size = store.list()
        assert by_size and writer.stats()["open_buffers"] > 0
        longest = max(len(x) for x in lines[:300]) + 1
        for key in by_size:
            assert 2048 <= len(store.get(key)) < 2048 + longest
            assert key.endswith(".jsonl")
        writer.flush_all()
        assert writer.stats()["open_buffers"] == 0 and len(store.list()) > len(by_size)


def test_flush_by_interval(tmp_path: Path, lines: list[bytes]) -> None:
    records = fill(tmp_path / "stream", lines[:200])
    store = LocalStore(tmp_path / "lake")
    now = [1000.0]
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = RawWriter(stream, store, WriterSettings(flush_interval_s=300),
                           clock=lambda: now[0])
        assert writer.poll() == len(records)
        assert store.list() == [] and stream.committed("raw-writer", "0") is None
        now[0] += 299
        writer.poll()
        assert store.list() == []
        now[0] += 1
        writer.poll()
        open_partitions = len({lake.parse_key(k).path for k in store.list()})
        assert len(store.list()) == open_partitions > 1
        assert writer.stats()["open_buffers"] == 0
        for shard in stream.shards():
            last = max(r.position for r in records if r.shard == shard)
            assert stream.committed("raw-writer", shard) == last


CHILD = textwrap.dedent("""
    import sys
    from mad.config import load_settings
    from mad.runtime.writer import run_writer as main
    overrides = {"ingest.stream.embedded.path": sys.argv[1], "ingest.stream.embedded.shards": 2,
                 "lake.url": sys.argv[2], "data_dir": sys.argv[3],
                 "writer.flush_bytes": 1024, "writer.read_batch": 20}
    sys.exit(main(load_settings(env={}, overrides=overrides)))
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_stop_mid_run_loses_nothing(tmp_path: Path, lines: list[bytes], sig: int) -> None:
    records = fill(tmp_path / "stream", lines)
    want_good, want_bad = expected(records)
    lake_dir = tmp_path / "lake"
    store = LocalStore(lake_dir)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "stream"), str(lake_dir),
         str(tmp_path / "data")],  # its state database and health file stay in tmp_path
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(store.list()) < 30 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(sig)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 0), err

    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        committed = {s: stream.committed("raw-writer", s) for s in stream.shards()}
        before, _ = read_lake(store)
        # everything up to each checkpoint is in the lake already
        upto = {s: -1 if c is None else c for s, c in committed.items()}
        done = [r for r in records if r.position <= upto[r.shard]]
        done_good, _ = expected(done)
        assert not done_good - before
        assert sum(before.values()) < sum(want_good.values()), "stopped after the end"
        if sig == signal.SIGTERM:  # a clean stop writes all it read, then checkpoints
            assert sum(before.values()) == sum(done_good.values())
        RawWriter(stream, store, WriterSettings()).drain()

    got_good, errors = read_lake(store)
    assert set(got_good) == set(want_good)  # nothing missing, nothing invented
    assert all(got_good[k] >= n for k, n in want_good.items())  # duplicates allowed
    assert set(Counter(str(e["error_code"]) for e in errors)) == set(want_bad)
    for path in lake_dir.rglob("*"):  # only complete part files are visible by name
        assert path.is_dir() or path.name.startswith((".tmp-", "part-")), path


def writer_settings(tmp_path: Path, state_dir: Path, lake_dir: Path) -> Settings:
    return load_settings(config_file=None, env={}, overrides={
        "data_dir": str(tmp_path / "data"), "ingest.stream.embedded.path": str(tmp_path / "stream"),
        "ingest.stream.embedded.shards": SHARDS, "lake.url": str(lake_dir),
        "state.url": f"sqlite:///{state_dir / 'state.db'}", "writer.flush_bytes": 4096})


def wait_for(what: str, condition: Callable[[], bool], seconds: float = 60) -> None:
    """Poll `condition` (bounded in time); fail naming `what`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.05)


class Running:
    """`RawWriter.run` in a thread, as the writer service runs it; keeps what it raised."""

    def __init__(self, writer: RawWriter) -> None:
        self.writer, self.stop, self.error = writer, threading.Event(), None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.writer.run(self.stop, idle_sleep=0.05, drain=True)
        except BaseException as err:  # the test reports it
            self.error = err

    def alive(self) -> bool:
        assert self.error is None, f"the writer died: {self.error!r}"
        return self.thread.is_alive()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert self.error is None and not self.thread.is_alive(), self.error


def lake_records(store: ObjectStore) -> Counter[bytes]:
    return Counter(row for key in store.list() for row in gzip.decompress(store.get(key))
                   .splitlines())


def test_a_full_state_database_disk_is_retried_and_each_file_recorded_once(
    tmp_path: Path, lines: list[bytes], small_disk: SmallDisk,
) -> None:
    records = fill(tmp_path / "stream", lines[:400])
    state_dir = small_disk(2 * 2**20)
    settings = writer_settings(tmp_path, state_dir, tmp_path / "lake")
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = build_writer(settings, stream)
        ledger(settings).summary()  # the database is there, its tables made: now the disk fills
        filler = fill_disk(state_dir)
        running = Running(writer)
        wait_for("state database failures", lambda: writer.stats()["state_failures"] >= 2)
        assert running.alive()
        stats = writer.stats()
        assert stats["files"] > 0 and stats["unrecorded_files"] > 0
        assert "full" in stats["failing"]["state"]
        status = collect(settings)["writer"]
        assert status["unrecorded_files"] > 0 and "full" in status["failing"]["state"]
        assert "wait to be recorded" in render(collect(settings))
        filler.unlink()
        wait_for("files recorded", lambda: writer.stats()["unrecorded_files"] == 0)
        running.finish()
    store = LocalStore(tmp_path / "lake")
    ledger_rows = ledger(settings).summary()["datasets"]
    assert sum(d["files"] for d in ledger_rows.values()) == len(store.list())
    assert sum(lake_records(store).values()) == len(records)  # no file was written twice
    assert collect(settings)["writer"]["failing"] == {}


def test_a_full_lake_disk_is_retried_and_visible(
    tmp_path: Path, lines: list[bytes], small_disk: SmallDisk,
) -> None:
    records = fill(tmp_path / "stream", lines[:400])
    lake_dir = small_disk(2**20)
    settings = writer_settings(tmp_path, tmp_path, lake_dir)
    filler = fill_disk(lake_dir)
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = build_writer(settings, stream)
        running = Running(writer)
        wait_for("lake failures", lambda: writer.stats()["lake_failures"] >= 2)
        assert running.alive() and writer.stats()["files"] == 0
        status = collect(settings)["writer"]
        assert status["failures"]["lake"] >= 2 and "No space" in status["failing"]["lake"]
        assert "lake writes failing" in render(collect(settings))
        assert all(c is None for c in writer.stats()["committed"].values())
        filler.unlink()
        wait_for("the lake written", lambda: writer.stats()["files"] > 0
                 and "lake" not in writer.stats()["failing"])
        running.finish()
    store = LocalStore(lake_dir)
    assert sum(lake_records(store).values()) == len(records)
    assert not [p for p in lake_dir.rglob(".tmp-*")]


def test_a_writer_stopped_while_the_lake_is_full_keeps_the_records_in_the_stream(
    tmp_path: Path, lines: list[bytes], small_disk: SmallDisk,
) -> None:
    fill(tmp_path / "stream", lines[:400])
    lake_dir = small_disk(2**20)
    settings = writer_settings(tmp_path, tmp_path, lake_dir)
    fill_disk(lake_dir)
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = build_writer(settings, stream)
        writer.stop_attempts = 2
        running = Running(writer)
        wait_for("lake failures", lambda: writer.stats()["lake_failures"] >= 1)
        running.finish()  # returns, without a traceback, leaving the records to the next run
        assert all(stream.committed("raw-writer", s) is None for s in stream.shards())


def test_stale_temp_files_of_the_writer_are_swept_at_start(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    folder = lake_dir / lake.raw_partition("log", "auth", 0)
    folder.mkdir(parents=True)
    old, fresh = folder / ".tmp-0123abcd", folder / ".tmp-4567ef01"
    other = lake_dir / "md-transformed-logs" / ".tmp-89ab"  # not the raw writer's
    other.parent.mkdir(parents=True)
    for path in (old, fresh, other):
        path.write_bytes(b"half a file")
    two_hours_ago = time.time() - 7200
    for path in (old, other):
        os.utime(path, (two_hours_ago, two_hours_ago))
    fill(tmp_path / "stream", [])
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = RawWriter(stream, LocalStore(lake_dir), WriterSettings())
        stop = threading.Event()
        stop.set()
        writer.run(stop)
    assert not old.exists() and fresh.exists() and other.exists()
    assert writer.stats()["swept_temp_files"] == 1


def test_a_state_database_unreachable_from_the_start_does_not_stop_the_writer(
    tmp_path: Path, lines: list[bytes],
) -> None:
    records = fill(tmp_path / "stream", lines[:400])
    settings = writer_settings(tmp_path, tmp_path, tmp_path / "lake")
    settings.state.url = f"postgresql+psycopg://mad@127.0.0.1:{free_port()}/nothing_listens"
    with EmbeddedStream(tmp_path / "stream", shards=SHARDS) as stream:
        writer = build_writer(settings, stream)  # the ledger is opened on first use
        running = Running(writer)
        wait_for("state database failures", lambda: writer.stats()["state_failures"] >= 1
                 and writer.stats()["unrecorded_files"] > 0)
        assert running.alive()
        writer.stop_attempts = 1
        running.finish()
        assert writer.stats()["unrecorded_files"] > 0  # logged; their files are in the lake
    assert sum(lake_records(LocalStore(tmp_path / "lake")).values()) == len(records)
