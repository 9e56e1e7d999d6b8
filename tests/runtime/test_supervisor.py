"""The supervisor with real processes and real signals: a killed raw writer is restarted, a
killed supervisor takes its writer with it, a SIGTERM to the process group stops everything
with every acknowledged event in the lake, and a part that keeps dying ends the service."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from mad import lake
from mad.config import load_settings
from mad.generate.backfill import run_backfill
from mad.stores import open_store
from tests.conftest import free_port
from tests.ingest.test_end_to_end import post_all
from tests.runtime.helpers import processes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = tmp_path_factory.mktemp("supervisor_backfill")
    settings = load_settings(env={}, overrides={
        "generate.duration": "5m", "generate.rate": 20, "generate.seed": 5,
        "generate.start": "2026-11-03T10:00:00Z"})
    run_backfill(settings.generate, out, progress=False)
    return (out / "events.jsonl").read_bytes().splitlines(keepends=True)


def children(pid: int) -> list[int]:
    """Live child processes of `pid`, from /proc."""
    return [child for child, (parent, _) in processes().items() if parent == pid]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(check: object, limit_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


class Serve:
    """`mad ingest serve` in its own process group, on a free port."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.lake = tmp / "data" / "lake"
        self.env = {**os.environ, "MAD_DATA_DIR": str(tmp / "data"),
                    "MAD_INGEST__PORT": str(self.port), "MAD_WRITER__FLUSH_INTERVAL_S": "0.5",
                    "MAD_SUPERVISOR__RESTART_BACKOFF_S": "0.2", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "ingest", "serve"],
                                     env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.listening, 60, "the ingest API")
        wait_for(lambda: len(self.writers()) == 1, 30, "the raw writer")

    def listening(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(self.output())
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def writers(self) -> list[int]:
        """The raw writer child (multiprocessing's resource tracker is a child too)."""
        pids = []
        for pid in children(self.proc.pid):
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(pid)
            except OSError:
                continue
        return pids

    def writer(self) -> int:
        pids = self.writers()
        assert len(pids) == 1, pids
        return pids[0]

    def output(self) -> str:
        out, _ = self.proc.communicate(timeout=120)
        return out.decode()

    def lake_ids(self) -> set[str]:
        return raw_ids(self.lake)


def raw_ids(lake_dir: Path) -> set[str]:
    """The event ids in the raw event datasets of a local lake."""
    store = open_store(str(lake_dir))
    ids: set[str] = set()
    for dataset in lake.RAW_DATASETS.values():
        for key in store.list(dataset + "/"):
            ids |= {orjson.loads(line)["event_id"]
                    for line in gzip.decompress(store.get(key)).splitlines()}
    return ids


def test_a_killed_writer_is_restarted_and_nothing_is_lost(tmp_path: Path,
                                                          lines: list[bytes]) -> None:
    serve = Serve(tmp_path)
    first, _, _ = post_all(serve.port, lines[: len(lines) // 2])
    old = serve.writer()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: serve.writers() not in ([], [old]), 30, "a new writer")
    second, _, _ = post_all(serve.port, lines[len(lines) // 2:])
    new = serve.writer()
    serve.proc.send_signal(signal.SIGTERM)
    out = serve.output()
    assert serve.proc.returncode == 0, out
    assert "was killed by signal 9; restarting it" in out and "stopped:" in out
    assert first | second <= serve.lake_ids()
    assert not alive(old) and not alive(new)


def test_a_killed_supervisor_takes_its_writer_along(tmp_path: Path,
                                                    lines: list[bytes]) -> None:
    serve = Serve(tmp_path)
    accepted, _, _ = post_all(serve.port, lines)
    writer = serve.writer()
    serve.proc.kill()
    serve.proc.wait(10)
    wait_for(lambda: not alive(writer), 60, "the orphaned writer to exit")
    assert accepted <= serve.lake_ids()  # it wrote what the stream held before exiting


def test_sigterm_to_the_process_group_stops_everything_and_drains(
    tmp_path: Path, lines: list[bytes],
) -> None:
    serve = Serve(tmp_path, MAD_WRITER__FLUSH_INTERVAL_S="300")  # nothing flushed before
    accepted, _, _ = post_all(serve.port, lines)
    writer = serve.writer()
    os.killpg(serve.proc.pid, signal.SIGTERM)  # what systemd and `kill -- -PGID` do
    out = serve.output()
    assert serve.proc.returncode == 0, out
    assert "stopped:" in out and "left in the stream" not in out
    assert accepted <= serve.lake_ids()
    assert not alive(writer)


def test_a_writer_that_keeps_dying_ends_the_service_non_zero(tmp_path: Path) -> None:
    serve = Serve(tmp_path, MAD_SUPERVISOR__MAX_RESTARTS="2")
    for _ in range(3):
        wait_for(lambda: len(serve.writers()) == 1, 30, "a writer")
        os.kill(serve.writer(), signal.SIGKILL)
        wait_for(lambda: not serve.writers() or serve.proc.poll() is not None, 30,
                 "the writer to die")
    out = serve.output()
    assert serve.proc.returncode == 1, out
    errors = [line for line in out.splitlines() if line.startswith("mad: error:")]
    assert len(errors) == 1 and "giving up" in errors[0], out
    assert "Traceback" not in out


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "mad.cli", "ingest", "serve"], capture_output=True,
            text=True, timeout=60, env={**os.environ, "MAD_DATA_DIR": str(tmp_path / "d"),
                                        "MAD_INGEST__PORT": str(port)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "is the port in use" in proc.stderr


def test_mad_up_restarts_each_killed_child_and_leaves_none(tmp_path: Path,
                                                           lines: list[bytes]) -> None:
    port = free_port()
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"), "MAD_INGEST__PORT": str(port),
           "MAD_SIMULATE__PORT": str(free_port()), "MAD_WRITER__FLUSH_INTERVAL_S": "0.5",
           "MAD_ETL__WATCH_INTERVAL_S": "1", "MAD_DETECT__WATCH_INTERVAL_S": "1",
           "MAD_SUPERVISOR__RESTART_BACKOFF_S": "0.2", "MAD_SUPERVISOR__BACKFILL_HOURS": "0",
           "MAD_SUPERVISOR__STATUS_PORT": str(free_port())}
    proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "up", "--rate", "0",
                             "--no-dashboard"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def spawned() -> list[int]:
        return [p for p in children(proc.pid)
                if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]

    wait_for(lambda: len(spawned()) == 3, 60, "writer, etl and detection")
    accepted, _, _ = post_all(port, lines)
    first = spawned()
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(spawned()) == 3 and not set(spawned()) & set(first), 60,
             "three new children")
    time.sleep(3)  # an ETL pass over what was posted
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    text = out.decode()
    assert proc.returncode == 0, text
    for name in ("raw writer", "etl", "detection"):
        assert f"{name} was killed by signal 9; restarting it" in text, text
    assert "stopped: ingest API, raw writer, etl, detection" in text
    assert not any(alive(p) for p in first)
    assert accepted <= raw_ids(tmp_path / "data" / "lake")
