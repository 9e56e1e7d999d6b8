"""The dashboard as a supervised child of `mad up`: it answers on its port, a SIGKILLed
dashboard is restarted and counted, and a SIGTERM to the process group stops it with the
rest without counting its exit as a crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from mad.config import load_settings
from mad.state import Components, open_state
from tests.runtime.helpers import Up, mad_processes, up_env, wait_for

pytestmark = pytest.mark.slow


def _streamlit_ok(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=5).status_code \
            == 200
    except httpx.HTTPError:
        return False


def test_the_dashboard_child_answers_restarts_and_stops(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = up_env(data, MAD_SUPERVISOR__RESTART_BACKOFF_S="2")
    port = int(env["MAD_DASHBOARD__PORT"])
    with (tmp_path / "up.log").open("wb") as log:
        up = Up(env, ["--rate", "0"], log)
        try:
            wait_for(lambda: up.health()[0] == 200, 120, "every part, the dashboard too")
            dashboard = up.component("dashboard")
            assert dashboard["status"] == "running" and dashboard["required"] is True
            assert dashboard["url"] == f"http://127.0.0.1:{port}"
            assert _streamlit_ok(port)

            os.kill(dashboard["pid"], signal.SIGKILL)
            wait_for(lambda: up.component("dashboard")["status"] == "restarting", 30,
                     "its death")
            assert up.health()[0] == 503
            wait_for(lambda: up.health()[0] == 200, 120, "the dashboard back")
            assert up.component("dashboard")["restarts"] == 1
            assert _streamlit_ok(port)
        except BaseException:
            up.kill_all()
            raise
        assert up.sigterm_group() == 0, (tmp_path / "up.log").read_text()[-3000:]
    text = (tmp_path / "up.log").read_text()
    assert "stopped: dashboard, ingest API" in text
    assert "dashboard was killed by signal 9; restarting it" in text
    assert text.count("restarting it") == 1, text[-3000:]
    engine = open_state(load_settings(env={}, overrides={"data_dir": str(data)}).state_url,
                        create=False)
    row = next(r for r in Components(engine).all() if r["name"] == "dashboard")
    assert (row["status"], row["restarts"]) == ("stopped", 1)
    assert not _streamlit_ok(port)
    assert not mad_processes(data)
