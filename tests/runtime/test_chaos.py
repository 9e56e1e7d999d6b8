"""Chaos: `mad up` under a steady load while the API (the supervisor), the raw writer, the
ETL and detection are killed with SIGKILL at random moments, several times each; the test
restarts what the supervisor does not (the supervisor itself).

Afterwards every acknowledged event_id is in the transformed lake exactly once, the
aggregates equal those of one clean run over the same raw files, no process is left and no
temp file remains. Run alone with `pytest -m chaos`.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import duckdb
import httpx
import pytest

from mad import lake
from mad.config import load_settings
from mad.etl.runner import EtlRunner
from mad.generate.backfill import run_backfill
from tests.conftest import free_port
from tests.etl.helpers import float_blind, read_rows, same
from tests.runtime.helpers import processes

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(1200)]

CHAOS_S = 130.0  # at least two minutes of kills under load
BATCH = 100
PARTS = {"writer": "mad-raw-writer", "etl": "mad-etl", "detect": "mad-detection"}


def child_named(parent: int, name: str) -> int | None:
    return next((pid for pid, (ppid, n) in processes().items()
                 if ppid == parent and n == name), None)


class Up:
    """`mad up` (no simulator: the test is the load) in its own process group."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self.env, self.log = env, log
        self.proc = self._start()
        self.pids: set[int] = set()  # every process we saw, to check none is left

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "up", "--rate", "0",
                                 "--no-dashboard"],
                                env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        port = int(self.env["MAD_INGEST__PORT"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "mad up exited"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return proc
            time.sleep(0.1)
        pytest.fail("mad up did not listen in 60 s")

    def seen(self) -> None:
        self.pids.add(self.proc.pid)
        self.pids |= {pid for pid, (ppid, _) in processes().items() if ppid == self.proc.pid}

    def kill_supervisor(self) -> None:
        self.seen()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = self._start()

    def kill_child(self, name: str) -> bool:
        pid = child_named(self.proc.pid, name)
        if pid is None:
            return False  # between a death and its restart
        self.pids.add(pid)
        os.kill(pid, signal.SIGKILL)
        return True


class Load:
    """Posts the lines in batches at a steady pace until done, retrying a batch while the
    API is down (it is being killed); keeps the acknowledged ids."""

    def __init__(self, port: int, lines: list[bytes], pace_s: float) -> None:
        self.port, self.lines, self.pace_s = port, lines, pace_s
        self.accepted: set[str] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error = ""

    def _run(self) -> None:
        url = f"http://127.0.0.1:{self.port}/v1/events"
        with httpx.Client(timeout=30) as client:
            for i in range(0, len(self.lines), BATCH):
                body = b"".join(self.lines[i:i + BATCH])
                for _attempt in range(600):  # bounded: 600 x 0.25 s at most per batch
                    try:
                        resp = client.post(url, content=body,
                                           headers={"content-type": "application/x-ndjson"})
                    except httpx.HTTPError:
                        time.sleep(0.25)
                        continue
                    if resp.status_code == 200:
                        self.accepted |= {r["event_id"] for r in resp.json()["records"]
                                          if r["status"] == "accepted"}
                        break
                    time.sleep(0.25)
                else:
                    self.error = f"batch {i} never acknowledged"
                    return
                time.sleep(self.pace_s)


def transformed_ids(lake_dir: Path) -> tuple[int, set[str]] | None:
    """(rows, distinct ids) over the transformed datasets, or None while a swap is under way."""
    files = [str(p) for d in lake.TRANSFORMED_DATASETS.values()
             for p in (lake_dir / d).rglob("*.parquet")]
    if not files:
        return 0, set()
    try:
        ids = [r[0] for r in duckdb.sql(
            f"SELECT event_id FROM read_parquet({files!r})").fetchall()]
    except duckdb.Error:
        return None
    return len(ids), set(ids)


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = tmp_path_factory.mktemp("chaos_backfill")
    settings = load_settings(env={}, overrides={
        "generate.duration": "40m", "generate.rate": 20, "generate.seed": 23,
        "generate.start": "2026-11-04T09:00:00Z"})
    run_backfill(settings.generate, out, progress=False)
    return (out / "events.jsonl").read_bytes().splitlines(keepends=True)


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for pid, (_, name) in processes().items():  # never leave a process behind, pass or fail
        if name in PARTS.values() and str(tmp_path) in _environ(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_everything_acknowledged_lands_once_through_random_kills(
    work: Path, lines: list[bytes],
) -> None:
    data = work / "data"
    spill = work / "spill"
    port = free_port()
    env = {**os.environ, "MAD_DATA_DIR": str(data), "MAD_INGEST__PORT": str(port),
           "MAD_WRITER__FLUSH_INTERVAL_S": "1", "MAD_ETL__WATCH_INTERVAL_S": "3",
           "MAD_DETECT__WATCH_INTERVAL_S": "3", "MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": "1GB",
           "MAD_ETL__ENGINE__DUCKDB__TEMP_DIRECTORY": str(spill),
           "MAD_SUPERVISOR__RESTART_BACKOFF_S": "0.2", "MAD_SUPERVISOR__MAX_BACKOFF_S": "2",
           "MAD_SUPERVISOR__MAX_RESTARTS": "100", "MAD_SUPERVISOR__BACKFILL_HOURS": "0",
           "MAD_SUPERVISOR__STATUS_PORT": str(free_port())}
    log = (work / "up.log").open("wb")
    up = Up(env, log)
    load = Load(port, lines, pace_s=CHAOS_S / (len(lines) / BATCH) * 0.9)
    load.thread.start()

    rng = random.Random(20261202)
    targets = ["api", "writer", "etl", "detect"] * 3
    rng.shuffle(targets)
    gap = CHAOS_S / (len(targets) + 1)
    done: list[str] = []
    for target in targets:
        time.sleep(rng.uniform(0.5, 1.5) * gap)
        up.seen()
        if target == "api":
            up.kill_supervisor()
            done.append(target)
            continue
        for _ in range(50):  # the part may be between a death and its restart
            if up.kill_child(PARTS[target]):
                done.append(target)
                break
            time.sleep(0.2)
    load.thread.join(timeout=600)
    assert not load.error, load.error
    assert sorted(done) == sorted(targets), done
    accepted = load.accepted
    assert len(accepted) > 0.9 * len(lines)

    deadline = time.monotonic() + 300  # the ETL catches up
    found: tuple[int, set[str]] | None = None
    while time.monotonic() < deadline:
        found = transformed_ids(data / "lake")
        if found is not None and accepted <= found[1]:
            break
        time.sleep(2)
    assert found is not None and accepted <= found[1], "acknowledged events missing"
    time.sleep(8)  # a last ETL pass (aggregates) and detection pass over the final lake
    up.seen()
    os.killpg(up.proc.pid, signal.SIGTERM)
    assert up.proc.wait(180) == 0, (work / "up.log").read_text()[-3000:]
    log.close()

    rows, ids = transformed_ids(data / "lake") or (0, set())
    assert rows == len(ids), "an event_id appears twice in the transformed lake"
    assert accepted <= ids
    text = (work / "up.log").read_text()
    for name in ("raw writer", "etl", "detection"):
        assert f"{name} was killed by signal 9" in text

    # the same raw files, once, without chaos
    clean = work / "clean"
    for dataset in (*lake.RAW_DATASETS.values(), lake.ERRORS_DATASET):
        if (data / "lake" / dataset).is_dir():
            shutil.copytree(data / "lake" / dataset, clean / "lake" / dataset)
    settings = load_settings(env={}, overrides={
        "data_dir": str(clean), "etl.engine.duckdb.memory_limit": "1GB",
        "etl.engine.duckdb.temp_directory": str(work / "spill-clean")})
    runner = EtlRunner(settings)
    try:
        runner.run_once()
    finally:
        runner.close()
    order = "\"window\", window_start, service, series"
    got = read_rows(f"{data / 'lake' / lake.AGGREGATES_DATASET}/**/*.parquet", order)
    want = read_rows(f"{clean / 'lake' / lake.AGGREGATES_DATASET}/**/*.parquet", order)
    assert len(got) == len(want) > 0
    assert same(sorted(got, key=float_blind), sorted(want, key=float_blind))

    alive = {pid for pid in up.pids if pid in processes()}
    assert not alive, f"processes left: {alive}"
    leftovers = [p for p in (data / "lake").rglob(".tmp-*")]
    leftovers += [p for p in (data / "lake" / lake.STAGING).glob("*")] \
        if (data / "lake" / lake.STAGING).is_dir() else []
    leftovers += list(spill.iterdir()) if spill.is_dir() else []  # DuckDB spill folders
    assert not leftovers, leftovers
