"""`GET /health` of `mad up` and the `runtime_components` table follow what really happens to
its parts: a SIGKILLed child is `restarting` (503) until it runs again (200, restarts=1), and
a clean stop reports every part `stopped`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from mad.config import load_settings
from mad.state import Components, open_state
from mad.state.components import is_stale
from tests.runtime.helpers import Up, mad_processes, up_env, wait_for

pytestmark = pytest.mark.slow


def test_health_follows_a_killed_child_through_its_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # a restart after 3 s: long enough to see the part down, whatever the load
    env = up_env(data, MAD_SUPERVISOR__RESTART_BACKOFF_S="3")
    with (tmp_path / "up.log").open("wb") as log:
        up = Up(env, ["--rate", "0", "--no-dashboard"], log)
        try:
            wait_for(lambda: up.health()[0] == 200, 60, "every part running")
            wait_for(lambda: "hot store" in up.health()[1]["components"], 30,
                     "the hot store probed")
            status, doc = up.health()
            assert set(doc["components"]) == {"simulator", "ingest API", "stream", "raw writer",
                                              "etl", "detection", "hot store", "dashboard",
                                              "backfill"}
            hot = doc["components"]["hot store"]
            assert hot["status"] == "running" and hot["required"] is False
            assert doc["hot_store"] == {"backend": "embedded", "up": True, "error": None}
            etl = doc["components"]["etl"]
            assert etl["status"] == "running" and etl["restarts"] == 0
            assert doc["components"]["dashboard"]["required"] is False  # --no-dashboard

            os.kill(etl["pid"], signal.SIGKILL)
            wait_for(lambda: up.component("etl")["status"] == "restarting", 30, "restarting")
            status, doc = up.health()
            assert status == 503 and doc["status"] == "degraded"
            assert doc["components"]["etl"]["last_exit"] == "was killed by signal 9"

            wait_for(lambda: up.health()[0] == 200, 60, "the etl back")
            etl_now = up.component("etl")
            assert etl_now["restarts"] == 1 and etl_now["pid"] != etl["pid"]

            metrics = httpx.get(f"http://127.0.0.1:{up.status_port}/metrics").text
            assert 'mad_component_restarts_total{component="etl"} 1' in metrics
            assert 'mad_component_up{component="etl"} 1' in metrics

            engine = open_state(load_settings(env={}, overrides={"data_dir": str(data)})
                                .state_url, create=False)
            components = Components(engine)
            wait_for(lambda: _row(components, "etl")["pid"] == etl_now["pid"], 30,
                     "the report of the new etl")
            row = _row(components, "etl")
            assert row["status"] == "running" and row["restarts"] == 1
            assert not is_stale(row)
            assert row["updated_at"].tzinfo is not None
        except BaseException:
            up.kill_all()
            raise
        assert up.sigterm_group() == 0, (tmp_path / "up.log").read_text()[-3000:]
    rows = {r["name"]: r for r in components.all()}
    assert {r["status"] for r in rows.values()} == {"stopped"}, rows
    assert rows["etl"]["restarts"] == 1 and rows["etl"]["last_exit"] == "was killed by signal 9"
    assert not mad_processes(data)


def _row(components: Components, name: str) -> dict[str, object]:
    return next(r for r in components.all() if r["name"] == name)
