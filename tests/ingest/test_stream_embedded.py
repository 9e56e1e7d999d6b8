"""The embedded stream on real files: what only this backend promises (contiguous offsets,
fsync policies, threads, crashes, torn tails, retention and its timer). What every backend
promises is in `test_stream_contract.py`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.disks import SmallDisk, fill_disk

from mad.errors import ConfigError, TerminalError, TransientError
from mad.ingest.streams import STREAMS, StreamContext, StreamCorruptError
from mad.ingest.streams.embedded import EmbeddedReader, EmbeddedStream
from mad.ingest.streams.embedded.framing import HEAD, HEADER_SIZE

POLICIES = ["every_batch", "interval_ms=2"]


def frame_size(key: str, payload: bytes) -> int:
    return HEADER_SIZE + len(key.encode()) + len(payload)


def read_all(stream: EmbeddedStream, shard: str = "0") -> list[tuple[int, str, bytes]]:
    out, after = [], None
    while batch := stream.read(shard, after, 97):
        out += [(r.position, r.key, r.payload) for r in batch]
        after = batch[-1].position
    return out


def segment_files(path: Path, shard: str = "0") -> list[Path]:
    return sorted((path / f"shard-{shard}").glob("*.log"))


def wait_until(done: Callable[[], bool], what: str) -> None:
    """Poll `done` until it holds; the deadline only guards against a hang."""
    deadline = time.monotonic() + 60
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("policy", POLICIES)
def test_positions_are_contiguous_offsets_across_reopen(tmp_path: Path, policy: str) -> None:
    with EmbeddedStream(tmp_path, fsync=policy) as stream:
        acks = stream.append([("payments", f"event {i}".encode()) for i in range(10)])
        acks += stream.append([("cards", b"last")])
        assert [a.position for a in acks] == list(range(11))
        assert {a.shard for a in acks} == {"0"}
        assert [r.payload for r in stream.read("0", None, 2)] == [b"event 0", b"event 1"]
        stream.commit("writer", "0", 7)
        assert stream.lag("writer")["0"].records == 3
    with EmbeddedStream(tmp_path, fsync=policy) as stream:
        assert stream.committed("writer", "0") == 7
        assert [r.position for r in stream.read("0", 7, 100)] == [8, 9, 10]
        assert stream.append([("cards", b"more")])[0].position == 11
        assert stream.status().shards[0].committed == {"writer": 7}


def test_several_shards_keep_order_per_key(tmp_path: Path) -> None:
    keys = ["accounts", "payments", "cards", "loans", "auth", "notify"]
    with EmbeddedStream(tmp_path, shards=3) as stream:
        acks = stream.append([(keys[i % 6], str(i).encode()) for i in range(120)])
        assert len({(a.shard, a.position) for a in acks}) == 120
        seen: dict[str, list[int]] = {}
        for shard in stream.shards():
            for _, key, payload in read_all(stream, shard):
                seen.setdefault(key, []).append(int(payload))
        assert sorted(seen) == sorted(keys)
        for numbers in seen.values():
            assert numbers == sorted(numbers) and len(numbers) == 20
    with pytest.raises(ConfigError, match="3 shards"):
        EmbeddedStream(tmp_path, shards=2)


@pytest.mark.parametrize("policy", POLICIES)
def test_concurrent_appends_lose_and_duplicate_nothing(tmp_path: Path, policy: str) -> None:
    threads, batches, size = 6, 40, 25
    with EmbeddedStream(tmp_path, fsync=policy, segment_bytes=16 * 1024) as stream:

        def produce(t: int) -> None:
            for b in range(batches):
                stream.append([(f"t{t}", f"{t}:{b * size + i}".encode()) for i in range(size)])

        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        records = read_all(stream)
    assert [p for p, _, _ in records] == list(range(threads * batches * size))
    per_thread: dict[str, list[int]] = {}
    for _, _, payload in records:
        t, n = payload.decode().split(":")
        per_thread.setdefault(t, []).append(int(n))
    assert per_thread == {str(t): list(range(batches * size)) for t in range(threads)}


def test_reader_keeps_up_with_concurrent_appends(tmp_path: Path) -> None:
    total = 4000
    with EmbeddedStream(tmp_path, fsync="interval_ms=1", segment_bytes=8 * 1024) as stream:
        seen: list[int] = []

        def consume() -> None:
            after = None
            while len(seen) < total:
                for record in stream.read("0", after, 50):
                    seen.append(int(record.payload))
                    after = record.position
                if after is not None:
                    stream.commit("reader", "0", after)

        reader = threading.Thread(target=consume)
        reader.start()
        for b in range(total // 100):
            stream.append([("svc", str(b * 100 + i).encode()) for i in range(100)])
        reader.join()
        assert seen == list(range(total))
        assert stream.lag("reader")["0"].records == 0


CHILD = textwrap.dedent(
    """
    import sys
    from mad.ingest.streams.embedded import EmbeddedStream
    stream = EmbeddedStream(sys.argv[1], fsync=sys.argv[2], segment_bytes=64 * 1024)
    b = 0
    while True:
        acks = stream.append([("svc", f"{b}:{i}:".encode() + b"p" * 300) for i in range(50)])
        print(b, acks[0].position, acks[-1].position, flush=True)
        b += 1
    """
)


@pytest.mark.parametrize("policy", POLICIES)
def test_acknowledged_records_survive_sigkill(tmp_path: Path, policy: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), policy],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked = [child.stdout.readline() for _ in range(60)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    acked += child.stdout.readlines()
    child.stdout.close()
    lines = [line.split() for line in acked if line.endswith("\n")]
    with EmbeddedStream(tmp_path, segment_bytes=64 * 1024) as stream:
        records = {p: payload for p, _, payload in read_all(stream)}
        for b, first, last in lines:
            for i, position in enumerate(range(int(first), int(last) + 1)):
                assert records[position] == f"{b}:{i}:".encode() + b"p" * 300
        assert stream.append([("svc", b"after crash")])[0].position == len(records)


@pytest.mark.parametrize("damage", ["cut", "half_record", "zeros"])
def test_torn_tail_is_cut_and_appends_go_on(tmp_path: Path, damage: str) -> None:
    with EmbeddedStream(tmp_path) as stream:
        stream.append([("svc", f"r{i}".encode()) for i in range(10)])
    segment = segment_files(tmp_path)[-1]
    size = segment.stat().st_size
    if damage == "cut":
        os.truncate(segment, size - 3)
    else:
        tail = HEAD.pack(500, 0) + b"x" * 20 if damage == "half_record" else bytes(4096)
        with segment.open("ab") as f:
            f.write(tail)
    with EmbeddedStream(tmp_path) as stream:
        kept = 9 if damage == "cut" else 10
        assert [payload for _, _, payload in read_all(stream)] == [
            f"r{i}".encode() for i in range(kept)
        ]
        assert stream.status().recovered_bytes > 0
        assert stream.append([("svc", b"next")])[0].position == kept
        assert read_all(stream)[-1] == (kept, "svc", b"next")


def test_corrupt_record_in_sealed_segment_names_the_file(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path, segment_bytes=2048) as stream:
        for b in range(10):
            stream.append([("svc", f"{b}-{i}".encode() * 10) for i in range(10)])
    first = segment_files(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[300] ^= 0xFF
    first.write_bytes(bytes(data))
    with EmbeddedStream(tmp_path, segment_bytes=2048) as stream:
        with pytest.raises(StreamCorruptError, match=first.name):
            read_all(stream)
        assert stream.read("0", 40, 5)[0].position == 41  # later segments still read


def test_roll_and_retention_delete_only_consumed_segments(tmp_path: Path) -> None:
    payload = b"z" * 200
    size = frame_size("svc", payload)
    with EmbeddedStream(
        tmp_path, segment_bytes=4096, retention_seconds=0, consumers=["writer", "audit"]
    ) as stream:
        for _ in range(10):
            stream.append([("svc", payload)] * 10)
        files = segment_files(tmp_path)
        assert len(files) > 5
        assert stream.status().shards[0].segments == len(files)
        assert stream.disk_bytes() == sum(f.stat().st_size for f in files) == 100 * size
        per_segment = int(files[1].stem) - int(files[0].stem)
        lag = stream.lag("writer")["0"]
        assert (lag.records, lag.bytes) == (100, 100 * size)
        assert lag.age_seconds >= 0

        stream.commit("writer", "0", 3 * per_segment + 2)
        assert segment_files(tmp_path) == files  # "audit" has consumed nothing yet
        lag = stream.lag("writer")["0"]
        assert (lag.records, lag.bytes) == (100 - 3 * per_segment - 3, lag.records * size)

        stream.commit("audit", "0", 99)
        assert segment_files(tmp_path) == files[3:]  # the 4th is only partly consumed
        assert stream.read("0", None, 1)[0].position == 3 * per_segment
        assert stream.lag("audit")["0"].records == 0
        assert stream.status().shards[0].first == 3 * per_segment


def test_retention_keeps_consumed_data_within_age_and_size(tmp_path: Path) -> None:
    options = {"segment_bytes": 4096, "consumers": ["writer"]}
    with EmbeddedStream(tmp_path, retention_seconds=3600, **options) as stream:
        for _ in range(10):
            stream.append([("svc", b"q" * 200)] * 10)
        files = segment_files(tmp_path)
        stream.commit("writer", "0", 99)
        assert segment_files(tmp_path) == files
    budget = 2 * 4096
    with EmbeddedStream(tmp_path, retention_seconds=3600, retention_bytes=budget, **options) as s:
        assert s.apply_retention() > 0
        assert s.disk_bytes() <= budget and s.lag("writer")["0"].records == 0


def test_max_bytes_drops_unconsumed_data_and_counts_it(tmp_path: Path) -> None:
    payload = b"m" * 200
    with EmbeddedStream(tmp_path, segment_bytes=4096, max_bytes=3 * 4096) as stream:
        for _ in range(20):
            stream.append([("svc", payload)] * 10)
        status = stream.status()
        assert stream.disk_bytes() <= 3 * 4096
        assert status.dropped_records > 0
        assert status.dropped_bytes == status.dropped_records * frame_size("svc", payload)
        kept = read_all(stream)
        assert len(kept) + status.dropped_records == 200
        assert kept[-1][0] == 199
        assert stream.lag("late")["0"].records == len(kept)


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interval_ms=N"):
        EmbeddedStream(tmp_path, fsync="sometimes")
    context = StreamContext(data_dir=tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}")
    stream = STREAMS.create("embedded", {"path": tmp_path}, context=context)
    try:
        with pytest.raises(TerminalError, match="already open"):
            EmbeddedStream(tmp_path)
        stream.append([("svc", b"one")])
        with pytest.raises(TerminalError, match="readable positions end at 0"):
            stream.commit("writer", "0", 5)
        with pytest.raises(TerminalError, match="no shard"):
            stream.read("7", None, 1)
    finally:
        stream.close()


def test_a_corrupt_checkpoint_file_is_one_clear_error(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path) as stream:
        stream.append([("svc", b"one")])
    (tmp_path / "state.sqlite").write_bytes(b"this is not a database, " * 200)
    for opener in (EmbeddedStream, EmbeddedReader):
        with pytest.raises(TerminalError) as info:
            opener(tmp_path)
        text = str(info.value)
        assert str(tmp_path / "state.sqlite") in text and "\n" not in text
        assert "not a usable SQLite database" in text and "move it away" in text
    with EmbeddedStream(tmp_path / "again") as stream:  # the lock was released: reopen works
        stream.append([("svc", b"two")])


def test_a_checkpoint_on_a_full_disk_is_transient(small_disk: SmallDisk) -> None:
    disk = small_disk(2 * 2**20)
    with EmbeddedStream(disk / "stream", segment_bytes=2**16) as stream:
        stream.append([("svc", b"one")])
        filler = fill_disk(disk)
        with pytest.raises(TransientError, match=r"state\.sqlite"):
            for _ in range(200):  # bounded: a few commits may fit in the WAL's free pages
                stream.commit("writer", "0", 0)
        filler.unlink()
        stream.commit("writer", "0", 0)
        assert stream.committed("writer", "0") == 0


def test_records_larger_than_a_read_chunk(tmp_path: Path) -> None:
    big = bytes(range(256)) * 6000  # 1.5 MB, more than one read of a segment
    with EmbeddedStream(tmp_path, segment_bytes=1024 * 1024) as stream:
        stream.append([("svc", b"small"), ("svc", big), ("svc", b"after")])
        stream.append([("svc", big)])
        assert [len(p) for _, _, p in read_all(stream)] == [5, len(big), 5, len(big)]
        assert stream.read("0", 0, 1)[0].payload == big
    with EmbeddedStream(tmp_path, segment_bytes=1024 * 1024) as stream:
        assert [len(p) for _, _, p in read_all(stream)] == [5, len(big), 5, len(big)]


# -- the owner's retention timer ----------------------------------------------------------------


def fill_segments(stream: EmbeddedStream, batches: int = 10) -> None:
    for _ in range(batches):
        stream.append([("svc", b"q" * 200)] * 10)


def test_a_quiet_owner_drops_consumed_segments_past_their_age(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path, segment_bytes=4096, retention_seconds=0.2,
                        retention_interval=0.05, consumers=["writer"]) as owner:
        fill_segments(owner)
        files = segment_files(tmp_path)
        assert len(files) > 3
        with EmbeddedReader(tmp_path, consumers=["writer"]) as reader:
            reader.commit("writer", "0", 99)  # another process's commit: the owner hears nothing
        # Left alone from here, the owner's timer alone notices the commit and the age.
        wait_until(lambda: segment_files(tmp_path) == files[-1:], "the timer's retention pass")
        assert owner.read("0", None, 1)[0].position == int(files[-1].stem)
        assert owner.lag("writer")["0"].records == 0


def test_close_stops_the_retention_timer(tmp_path: Path) -> None:
    def timers() -> int:
        return sum(t.name == "stream-retention" for t in threading.enumerate())

    before = timers()
    stream = EmbeddedStream(tmp_path, retention_interval=0.05)
    assert timers() == before + 1
    stream.close()
    assert timers() == before
    with EmbeddedStream(tmp_path, retention_interval=None):
        assert timers() == before


def test_a_failed_retention_pass_is_logged_and_the_next_ones_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedStream(tmp_path, segment_bytes=4096, retention_seconds=0,
                        retention_interval=0.05, consumers=["writer"]) as owner:
        fill_segments(owner)
        files = segment_files(tmp_path)
        blocked = files[0]  # a directory where the oldest segment was: it cannot be unlinked
        blocked.rename(tmp_path / "moved-away.log")
        blocked.mkdir()
        with EmbeddedReader(tmp_path, consumers=["writer"]) as reader:
            reader.commit("writer", "0", 99)
        wait_until(lambda: "stream retention pass failed" in caplog.text, "the failed pass")
        wait_until(lambda: segment_files(tmp_path) == [blocked, files[-1]], "the next passes")
        blocked.rmdir()
        ack = owner.append([("svc", b"after the failure")])[0]
        assert owner.read("0", ack.position - 1, 10)[0].payload == b"after the failure"
