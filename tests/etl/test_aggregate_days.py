"""The aggregates of a day are recomputed until they are published after the day's events last
changed, whatever stopped an earlier attempt (a failure inside the aggregation here; a SIGKILL
in `test_restart.py`), with the state database on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from mad import lake
from mad.config import Settings, load_settings
from mad.errors import MadError
from mad.etl.engines import ENGINES, Engine
from mad.etl.plan import Plan
from mad.etl.runner import AGGREGATES, EtlRunner
from mad.state import EtlLedger, open_state
from mad.stores import open_store

HOUR6 = 1_793_512_800.0  # 2026-11-01T06:00:00Z
DAY = "2026-11-01"


class FailingAggregation:
    """The real DuckDB engine, except that its first `failures` aggregates plans raise (a bug
    or a crash inside the aggregation)."""

    def __init__(self, engine: Engine, failures: int) -> None:
        self.inner = engine
        self.name = engine.name
        self.failures = failures

    def execute(self, plan: Plan, raw_files: Sequence[str],
                datasets: Mapping[str, Sequence[str]], out_dir: str) -> dict[str, int]:
        if plan.name.startswith("aggregates") and self.failures > 0:
            self.failures -= 1
            raise RuntimeError("injected failure inside the aggregation")
        return self.inner.execute(plan, raw_files, datasets, out_dir)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def settings_for(tmp_path: Path, state_url: str) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "data"), "lake.url": str(tmp_path / "lake"),
        "state.url": state_url, "etl.engine.duckdb.memory_limit": "1GB",
        "etl.engine.duckdb.temp_directory": str(tmp_path / "spill")})


def put_events(tmp_path: Path, n: int) -> None:
    store = open_store(str(tmp_path / "lake"), create=True)
    body = "".join(json.dumps({
        "event_id": f"ev-{i}", "timestamp": f"2026-11-01T06:{i:02d}:00Z", "service": "auth",
        "event_type": "auth.token.issued", "kind": "log", "metrics": {"latency_ms": 5.0 + i},
    }) + "\n" for i in range(n))
    store.put(lake.raw_key("log", "auth", HOUR6, gzip=False), body.encode())


def aggregate_days(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "lake" / AGGREGATES).glob("window=*/date=*")}


def test_a_failed_aggregation_is_recorded_and_redone_by_the_next_pass(
    tmp_path: Path, state_url: str,
) -> None:
    put_events(tmp_path, 20)
    settings = settings_for(tmp_path, state_url)
    real = ENGINES.create("duckdb", {"memory_limit": "1GB", "threads": 2,
                                     "temp_directory": str(tmp_path / "spill")})
    runner = EtlRunner(settings, engine=FailingAggregation(real, failures=1))
    try:
        with pytest.raises(MadError, match="injected failure") as failed:
            runner.run_once()
        assert "\n" not in str(failed.value)
        ledger = EtlLedger(open_state(state_url))
        assert ledger.done_keys("events")  # the events run succeeded
        assert any(r["status"] == "failed" and "injected failure" in (r["error"] or "")
                   for r in ledger.recent_runs())
        assert not aggregate_days(tmp_path) or len(aggregate_days(tmp_path)) < 3

        again = runner.run_once()  # no new raw file: the day is still due
        assert (again.runs, again.days_aggregated) == (0, [DAY])
        windows = {p.parent.name for p in (tmp_path / "lake" / AGGREGATES).glob("*/date=*")}
        assert windows == {"window=1m", "window=5m", "window=1h"}

        assert runner.run_once().days_aggregated == []  # done: nothing due any more
        put_events(tmp_path, 30)  # the day's events change again
        assert runner.run_once().days_aggregated == [DAY]
    finally:
        runner.close()
