"""The live simulator's control API, served for real on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from mad.events import check
from tests.conftest import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    sink = tmp_path / "live" / "events.jsonl"
    env = {**os.environ, "MAD_GENERATE__SEED": "11"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mad.cli", "simulate", "serve", "--port", str(port),
         "--sink", str(sink)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"simulator did not start: {proc.stderr.read().decode()[-500:]}")
    yield base, sink
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


def wait_until_stopped(base: str, limit_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/api/status").json()
        if not status["running"]:
            return dict(status)
        time.sleep(0.2)
    pytest.fail("run did not stop in time")


def test_old_start_body_runs_for_its_duration_and_writes_labels(
    server: tuple[str, Path],
) -> None:
    base, sink = server
    body = {"interval_seconds": 0.5, "logs_per_interval": 40, "duration_seconds": 3}
    resp = httpx.post(f"{base}/api/continuous/start", json=body)
    assert resp.status_code == 200 and resp.json()["running"] is True
    assert httpx.post(f"{base}/api/continuous/start", json=body).status_code == 409
    status = wait_until_stopped(base)
    lines = sink.read_bytes().splitlines()
    assert status["lines_sent"] == len(lines) >= 40  # at least one interval, however loaded
    valid = [_load(line) for line in lines]
    assert sum(1 for r in valid if r is not None and check(r) is None) >= 0.95 * len(lines)
    labels = orjson.loads((sink.parent / "labels.json").read_bytes())
    assert labels["lines"] == len(lines)
    assert labels["live"]["request"]["logs_per_interval"] == 40


def _load(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def test_stop_ends_an_open_ended_run_and_incidents_can_be_injected(
    server: tuple[str, Path],
) -> None:
    base, sink = server
    body = {"interval_seconds": 0.5, "logs_per_interval": 20, "duration_seconds": 0}
    assert httpx.post(f"{base}/api/continuous/start", json=body).status_code == 200
    inc = httpx.post(f"{base}/api/incidents",
                     json={"scenario": "error_burst", "service": "payments",
                           "duration_seconds": 60})
    assert inc.status_code == 200 and inc.json()["origin"] == "payments"
    bad = httpx.post(f"{base}/api/incidents", json={"scenario": "meteor"})
    assert bad.status_code == 400 and "error_burst" in bad.json()["detail"]
    time.sleep(1.5)
    stopped = httpx.post(f"{base}/api/continuous/stop").json()
    assert stopped["status"] == "stopped" and stopped["running"] is False
    assert stopped["incidents"][0]["scenario"] == "error_burst"
    assert stopped["lines_sent"] == len(sink.read_bytes().splitlines()) > 0


@pytest.mark.parametrize(
    "body",
    [{"interval_seconds": 0}, {"logs_per_interval": -1}, {"duration_seconds": "soon"}, [],
     {"interval_seconds": 1e-6, "logs_per_interval": 1_000_000},
     {"interval_seconds": 1, "logs_per_interval": 1_000_000}],
)
def test_bad_start_bodies_are_rejected(server: tuple[str, Path], body: Any) -> None:
    base, _ = server
    resp = httpx.post(f"{base}/api/continuous/start", json=body)
    assert resp.status_code == 422
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}


def test_the_controller_runs_without_the_http_api(tmp_path: Path) -> None:
    """`mad up` drives the simulator through its controller; the same rules hold."""
    from mad.config import load_settings
    from mad.generate.live import IncidentRequest, LiveController, SimulatorBusy, StartRequest

    sink = tmp_path / "events.jsonl"
    sim = LiveController(load_settings(env={}, overrides={"simulate.sink": str(sink)}))
    assert sim.status() == {"running": False, "sink": str(sink)}
    with pytest.raises(SimulatorBusy, match="no run"):
        sim.inject(IncidentRequest(scenario="error_burst"))
    started = sim.start(StartRequest(interval_seconds=0.2, logs_per_interval=20,
                                     duration_seconds=0))
    assert started["status"] == "started" and sim.running()
    with pytest.raises(SimulatorBusy, match="already going"):
        sim.start(StartRequest())
    label = sim.inject(IncidentRequest(scenario="error_burst", duration_seconds=60))
    assert label["scenario"] == "error_burst"
    time.sleep(1.3)  # events are emitted per whole second of real time
    stopped = sim.stop()
    assert stopped["status"] == "stopped" and not sim.running()
    lines = sink.read_bytes().splitlines()
    assert stopped["lines_sent"] == len(lines) > 0
    assert (tmp_path / "labels.json").is_file()
    sim.close()  # nothing left to stop
