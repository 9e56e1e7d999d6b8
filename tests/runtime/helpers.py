"""What the `mad up` tests share: starting it in its own process group on free ports, its
status endpoint, the processes it leaves, and the ids in each layer of its lake."""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import duckdb
import httpx
import orjson
import pytest

from mad import lake
from tests.conftest import free_ports

T = TypeVar("T")


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, name) of every live process, from /proc."""
    found: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), name)
    return found


def environ_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def mad_processes(data_dir: Path) -> list[int]:
    """Live processes named mad-* (our children) started for `data_dir`."""
    return [pid for pid, (_, name) in processes().items()
            if name.startswith("mad-") and str(data_dir) in environ_of(pid)]


def wait_for(check: Callable[[], T], limit_s: float = 60.0, what: str = "condition") -> T:
    """What `check()` returns once it is true; fails the test after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def up_env(data: Path, **extra: str) -> dict[str, str]:
    """Settings of a `mad up` on free ports with short intervals and no backfill."""
    ingest, simulate, status, dashboard = free_ports(4)  # distinct: one server per port
    return {**os.environ, "MAD_DATA_DIR": str(data), "MAD_INGEST__PORT": str(ingest),
            "MAD_SIMULATE__PORT": str(simulate), "MAD_SUPERVISOR__STATUS_PORT": str(status),
            "MAD_DASHBOARD__PORT": str(dashboard), "MAD_WRITER__FLUSH_INTERVAL_S": "0.5",
            "MAD_ETL__WATCH_INTERVAL_S": "1", "MAD_DETECT__WATCH_INTERVAL_S": "1",
            "MAD_SUPERVISOR__RESTART_BACKOFF_S": "0.2", "MAD_SUPERVISOR__BACKFILL_HOURS": "0",
            **extra}


class Up:
    """`mad up ARGS` in its own process group; its output goes to `log`."""

    def __init__(self, env: dict[str, str], args: list[str], log: IO[bytes]) -> None:
        self.env, self.log = env, log
        self.ingest_port = int(env["MAD_INGEST__PORT"])
        self.status_port = int(env["MAD_SUPERVISOR__STATUS_PORT"])
        self.proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "up", *args], env=env,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(self.answers, 90, "the status endpoint of mad up")

    def answers(self) -> bool:
        assert self.proc.poll() is None, f"mad up exited with {self.proc.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            return self.health()[0] in (200, 503)
        return False

    def health(self) -> tuple[int, dict[str, Any]]:
        resp = httpx.get(f"http://127.0.0.1:{self.status_port}/health", timeout=5)
        return resp.status_code, resp.json()

    def component(self, name: str) -> dict[str, Any]:
        return self.health()[1]["components"][name]  # type: ignore[no-any-return]

    def sigterm_group(self, timeout_s: float = 180) -> int:
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill_all(self) -> None:
        """Cleanup after a failed test: nothing may outlive it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def post(port: int, lines: list[bytes], batch: int = 500) -> set[str]:
    """Post NDJSON batches; the acknowledged event ids."""
    accepted: set[str] = set()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for i in range(0, len(lines), batch):
            for _attempt in range(100):
                resp = client.post("/v1/events", content=b"".join(lines[i:i + batch]),
                                   headers={"content-type": "application/x-ndjson"})
                if resp.status_code not in (429, 503):
                    break
                time.sleep(float(resp.headers.get("retry-after", "1")))
            assert resp.status_code == 200, resp.text
            accepted |= {r["event_id"] for r in resp.json()["records"]
                         if r["status"] == "accepted"}
    return accepted


def raw_ids(lake_dir: Path) -> set[str]:
    ids: set[str] = set()
    for dataset in lake.RAW_DATASETS.values():
        for path in (lake_dir / dataset).rglob("part-*"):
            with gzip.open(path) as f:
                ids |= {orjson.loads(line)["event_id"] for line in f}
    return ids


def transformed_ids(lake_dir: Path) -> tuple[int, set[str]] | None:
    """(rows, distinct ids) of the transformed datasets, or None while a swap is under way."""
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


def aggregate_count(lake_dir: Path) -> int:
    """Sum of `count` over the 1m aggregates (0 while there are none)."""
    files = [str(p) for p in (lake_dir / lake.AGGREGATES_DATASET).rglob("*.parquet")
             if "window=1m" in str(p)]
    if not files:
        return 0
    try:
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()
    except duckdb.Error:
        return 0
    return int(rows[0][0])
