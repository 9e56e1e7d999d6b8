"""The embedded stream read from another process: a real reader process next to a real owner
(the test process, or a child that gets SIGKILLed), on real files."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from mad.errors import ConfigError, TerminalError
from mad.ingest.streams import STREAMS, StreamContext
from mad.ingest.streams.embedded import EmbeddedStream, framing, frontier
from mad.ingest.streams.embedded.frontier import FrontierFile
from mad.ingest.streams.embedded.reader import EmbeddedReader

READER = textwrap.dedent(
    """
    import json, sys, time
    from mad.ingest.streams.embedded import EmbeddedReader, EmbeddedStream

    stream = EmbeddedReader(sys.argv[1], shards=int(sys.argv[2]), checkpoint_ttl=0)
    cursor = {shard: None for shard in stream.shards()}

    def reply(value):
        print(json.dumps(value), flush=True)

    def take(shard, limit, commit):
        batch = stream.read(shard, cursor[shard], limit)
        if batch:
            cursor[shard] = batch[-1].position
            if commit:
                stream.commit("writer", shard, cursor[shard])
        return [[r.position, r.payload.decode()] for r in batch]

    for line in sys.stdin:
        cmd, *args = line.split()
        try:
            if cmd == "drain":  # all that is readable now, from the cursor
                out, commit = [], args[2:] == ["commit"]
                while rows := take(args[0], int(args[1]), commit):
                    out += rows
                reply(out)
            elif cmd == "follow":  # every shard until `n` records in all, committing each batch
                seen, total = {shard: [] for shard in cursor}, 0
                while total < int(args[0]):
                    got = 0
                    for shard in cursor:
                        rows = take(shard, 37, True)
                        seen[shard] += rows
                        got += len(rows)
                    total += got
                    if not got:
                        time.sleep(0.001)
                reply(seen)
            elif cmd == "seek":
                cursor[args[0]] = None if args[1] == "start" else int(args[1])
                reply("ok")
            elif cmd == "commit":
                stream.commit("writer", args[0], int(args[1]))
                reply("ok")
            elif cmd == "lag":
                reply({s: [lag.records, lag.bytes] for s, lag in stream.lag("writer").items()})
            elif cmd == "status":
                rows = stream.status().shards
                reply([[row.shard, row.first, row.last, row.segments] for row in rows])
            elif cmd == "append":
                stream.append([("svc", b"x")])
                reply("appended")
            elif cmd == "own":
                EmbeddedStream(sys.argv[1], shards=int(sys.argv[2])).close()
                reply("owned")
        except Exception as err:
            reply({"error": type(err).__name__, "message": str(err)})
    """
)

OWNER = textwrap.dedent(
    """
    import sys
    from mad.ingest.streams.embedded import EmbeddedStream

    stream = EmbeddedStream(sys.argv[1], fsync="interval_ms=3", segment_bytes=64 * 1024)
    b = 0
    while True:
        acks = stream.append([("svc", f"{b}:{i}:".encode() + b"p" * 300) for i in range(50)])
        print(b, acks[0].position, acks[-1].position, flush=True)
        b += 1
    """
)


class ReaderProcess:
    """A reader in a child process, driven one command (and one JSON answer) at a time."""

    def __init__(self, path: Path, shards: int = 1) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(path), str(shards)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str, error: bool = False) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)  # a guard against hangs
        assert ready, f"the reader process did not answer {command!r}"
        line = self.proc.stdout.readline()
        assert line, f"the reader process exited on {command!r}"
        answer = json.loads(line)
        failed = isinstance(answer, dict) and "error" in answer
        assert failed == error, f"{command!r} answered {answer!r}"
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()


@pytest.fixture
def reader_process(tmp_path: Path) -> Any:
    started: list[ReaderProcess] = []

    def start(shards: int = 1) -> ReaderProcess:
        started.append(ReaderProcess(tmp_path, shards))
        return started[-1]

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.close()


def segment_files(path: Path, shard: str = "0") -> list[Path]:
    return sorted((path / f"shard-{shard}").glob("*.log"))


def test_reader_process_follows_appends_rolls_and_retention(
    tmp_path: Path, reader_process: Any
) -> None:
    keys = ["accounts", "payments", "cards", "loans", "auth", "notify"]
    batches, size = 150, 20
    owner = EmbeddedStream(
        tmp_path,
        shards=3,
        fsync="interval_ms=2",
        segment_bytes=8 * 1024,
        retention_seconds=0,
        consumers=["writer"],
        checkpoint_ttl=0,
    )
    try:
        reader = reader_process(shards=3)
        acked: dict[tuple[str, int], str] = {}

        def produce() -> None:
            for b in range(batches):
                records = [(keys[(b + i) % 6], f"{b}:{i}:" + "v" * 150) for i in range(size)]
                acks = owner.append([(k, p.encode()) for k, p in records])
                for ack, (_, payload) in zip(acks, records, strict=True):
                    acked[(ack.shard, ack.position)] = payload

        producer = threading.Thread(target=produce)
        producer.start()
        seen = reader.ask(f"follow {batches * size}")
        producer.join()

        for shard, rows in seen.items():
            assert [p for p, _ in rows] == list(range(len(rows)))  # no gap, duplicate, reorder
            assert all(acked[(shard, p)] == payload for p, payload in rows)
        assert sum(len(rows) for rows in seen.values()) == len(acked) == batches * size
        assert {s: (lag.records, lag.bytes) for s, lag in owner.lag("writer").items()} == {
            s: (0, 0) for s in seen
        }
        for shard, rows in seen.items():
            assert owner.committed("writer", shard) == rows[-1][0]
        owner.apply_retention()
        assert [owner.status().shards[int(s)].segments for s in seen] == [1, 1, 1]
        assert reader.ask("lag") == {s: [0, 0] for s in seen}
        assert [row[3] for row in reader.ask("status")] == [1, 1, 1]
    finally:
        owner.close()


def test_retention_waits_for_the_reader_process_which_survives_deletes(
    tmp_path: Path, reader_process: Any
) -> None:
    options: dict[str, Any] = {
        "segment_bytes": 4096,
        "retention_seconds": 0,
        "consumers": ["writer"],
        "checkpoint_ttl": 0,
    }
    with EmbeddedStream(tmp_path, **options) as owner:
        for b in range(10):
            owner.append([("svc", f"{b}:{i}:".encode() + b"z" * 200) for i in range(10)])
        reader = reader_process()
        rows = reader.ask("drain 0 7")
        assert [p for p, _ in rows] == list(range(100))
        files = segment_files(tmp_path)
        per_segment = int(files[1].stem) - int(files[0].stem)
        assert owner.apply_retention() == 0 and segment_files(tmp_path) == files  # read only

        reader.ask(f"commit 0 {3 * per_segment + 2}")
        assert owner.committed("writer", "0") == 3 * per_segment + 2
        assert owner.lag("writer")["0"].records == 100 - 3 * per_segment - 3
        assert segment_files(tmp_path) == files[3:]  # the 4th is only partly consumed
        reader.ask("seek 0 start")
        assert reader.ask("drain 0 1000")[0][0] == 3 * per_segment
        reader.ask("seek 0 5")  # inside a deleted segment: resumes at the oldest kept record
        assert reader.ask("drain 0 1000")[0][0] == 3 * per_segment

        for b in range(10, 20):  # more rolls while the reader holds an older picture
            owner.append([("svc", f"{b}:{i}:".encode() + b"z" * 200) for i in range(10)])
        reader.ask("seek 0 99")
        rows = reader.ask("drain 0 13 commit")
        assert [p for p, _ in rows] == list(range(100, 200))
        assert rows[-1][1].startswith("19:9:")
        assert owner.apply_retention() > 0
        assert len(segment_files(tmp_path)) == 1
        assert reader.ask("lag") == {"0": [0, 0]}
        owner.append([("svc", b"after retention")])
        assert reader.ask("drain 0 10") == [[200, "after retention"]]
        row = owner.status().shards[0]
        assert reader.ask("status") == [["0", row.first, 200, 1]]
        assert row.first == int(segment_files(tmp_path)[0].stem)


def test_owner_killed_mid_append_reader_saw_only_durable_records(
    tmp_path: Path, reader_process: Any
) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    acked = [owner.stdout.readline()]  # the stream exists once the first ack is printed
    reader = reader_process()
    seen: list[list[Any]] = []
    for _ in range(8):
        acked += [owner.stdout.readline() for _ in range(10)]
        seen += reader.ask("drain 0 200 commit")
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    acked += owner.stdout.readlines()
    owner.stdout.close()
    seen += reader.ask("drain 0 200 commit")
    acks = [line.split() for line in acked if line.endswith("\n")]

    # Everything acknowledged or read is below the published frontier (durable).
    front = FrontierFile(tmp_path / "shard-0", writable=False).load()
    assert front is not None
    assert max(int(last) for _, _, last in acks) < front.next
    assert seen and seen[-1][0] < front.next
    # Whole records written but not yet fsynced when the owner died are not readable either.
    active = tmp_path / "shard-0" / f"{front.base:020d}.log"
    with active.open("ab") as f:
        f.write(framing.encode([(b"svc", f"unsynced:{i}".encode()) for i in range(5)], 0, 0))
    assert reader.ask("drain 0 200 commit") == []
    # The worst a machine crash could do now: lose every byte not covered by the frontier.
    for segment in segment_files(tmp_path):
        if int(segment.stem) > front.base:
            segment.unlink()
        elif int(segment.stem) == front.base:
            os.truncate(segment, front.size)

    with EmbeddedStream(tmp_path, segment_bytes=64 * 1024) as recovered:
        committed = recovered.committed("writer", "0")
        assert committed is not None and committed < front.next
        acks_after = recovered.append([("svc", f"after:{i}".encode()) for i in range(120)])
        assert acks_after[0].position == front.next  # positions past the frontier are reused
        seen += reader.ask("drain 0 200 commit")
        stored: dict[int, bytes] = {}
        after = None
        while batch := recovered.read("0", after, 500):
            stored.update((r.position, r.payload) for r in batch)
            after = batch[-1].position
    assert [p for p, _ in seen] == list(range(len(seen)))
    assert seen[-1] == [acks_after[-1].position, "after:119"]
    for position, payload in seen:  # nothing the reader returned changed in the crash
        assert stored[position] == payload.encode()
    for b, first, last in acks:
        for i, position in enumerate(range(int(first), int(last) + 1)):
            assert stored[position] == f"{b}:{i}:".encode() + b"p" * 300


def test_roles_one_owner_many_readers(tmp_path: Path, reader_process: Any) -> None:
    early = reader_process()  # before any owner: reads nothing, fails nothing
    assert early.ask("drain 0 10") == []
    assert early.ask("lag") == {"0": [0, 0]}
    with EmbeddedStream(tmp_path, consumers=["writer"]) as owner:
        owner.append([("svc", b"one"), ("svc", b"two")])
        second = reader_process()
        assert early.ask("drain 0 10") == second.ask("drain 0 10") == [[0, "one"], [1, "two"]]
        refused = early.ask("own", error=True)
        assert refused["error"] == "TerminalError" and "already open" in refused["message"]
        refused = second.ask("append", error=True)
        assert refused["error"] == "TerminalError" and "reader" in refused["message"]
        refused = second.ask("commit 0 2", error=True)
        assert "readable positions end at 1" in refused["message"]
        second.ask("commit 0 0")
        assert owner.lag("writer")["0"].records in (1, 2)  # within checkpoint_ttl
        assert owner.apply_retention() == 0 and owner.lag("writer")["0"].records == 1
    assert early.ask("own") == "owned"  # no owner any more; readers hold no lock
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    reader = STREAMS.create("embedded", {"path": tmp_path},
                            context=StreamContext(tmp_path, state_url, role="reader"))
    try:
        assert isinstance(reader, EmbeddedReader)
        assert [r.payload for r in reader.read("0", None, 10)] == [b"one", b"two"]
        assert reader.committed("writer", "0") == 0
        with pytest.raises(TerminalError, match="open as a reader"):
            reader.append([("svc", b"x")])
    finally:
        reader.close()
    with pytest.raises(ConfigError, match="1 shards"):
        EmbeddedReader(tmp_path, shards=2)
    with pytest.raises(ConfigError, match="role"):
        STREAMS.create("embedded", {"path": tmp_path},
                       context=StreamContext(tmp_path, state_url, role="watcher"))
    with pytest.raises(ConfigError, match="unknown embedded stream options"):
        EmbeddedReader(tmp_path, segmentbytes=5)


def test_reader_seeks_and_lag_match_the_owner(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path, segment_bytes=64 * 1024, consumers=["writer"]) as owner:
        for b in range(40):
            owner.append([("svc", f"{b}:{i}:".encode() + b"s" * (i * 37 % 900)) for i in range(50)])
        with EmbeddedReader(tmp_path, consumers=["writer"]) as reader:
            expected = owner.read("0", None, 5000)
            assert len(expected) == 2000 and len(list(tmp_path.glob("shard-0/*.log"))) > 3
            for after in [1999, 1500, None, 7, 1234, 640, 1998]:  # cold seeks, then warm ones
                got = reader.read("0", after, 300)
                first = 0 if after is None else after + 1
                assert got == expected[first : first + 300]
            after = None
            while batch := reader.read("0", after, 41):  # sequential reads grow the index
                assert batch == expected[batch[0].position : batch[-1].position + 1]
                after = batch[-1].position
            assert after == 1999
            for position in [0, 333, 1500, 1998, 1999, 1700]:
                reader.commit("writer", "0", position)
                owner.apply_retention()
                mine, theirs = reader.lag("writer")["0"], owner.lag("writer")["0"]
                assert (mine.records, mine.bytes) == (theirs.records, theirs.bytes)
                assert mine.records == 1999 - position


def test_frontier_older_than_the_files_reads_nothing_until_the_owner_publishes(
    tmp_path: Path,
) -> None:
    options: dict[str, Any] = {"segment_bytes": 4096, "retention_seconds": 0}
    with EmbeddedStream(tmp_path, consumers=["writer"], **options) as owner:
        owner.append([("svc", b"a" * 300)] * 30)
        old = FrontierFile(tmp_path / "shard-0", writable=False).load()
        for _ in range(3):
            owner.append([("svc", b"b" * 300)] * 30)
        owner.commit("writer", "0", 119)
    assert old is not None and not (tmp_path / "shard-0" / f"{old.base:020d}.log").exists()
    # What a machine crash can leave: the never-fsynced frontier file from before a deletion.
    (tmp_path / "shard-0" / "FRONTIER").write_bytes(frontier.encode(old))
    with EmbeddedReader(tmp_path) as reader:
        assert reader.read("0", None, 10) == []
        assert reader.lag("writer")["0"].records == 0
        with EmbeddedStream(tmp_path, **options) as owner:
            owner.append([("svc", b"c")])
            assert [r.payload for r in reader.read("0", 119, 10)] == [b"c"]
