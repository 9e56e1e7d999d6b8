"""Killing `mad etl run` (SIGKILL) mid-write or mid-aggregation and running it again ends with
the same lake as one uninterrupted run, with the state database on SQLite and on PostgreSQL;
nothing the killed process left behind (stages, DuckDB spill folders) stays."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.etl.helpers import float_blind, same, split_backfill

DATASETS = ("md-transformed-logs", "md-transformed-metrics", "md-transformed-apm",
            "md-quarantine", "md-aggregates")


def etl(lake: Path, data: Path, state_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MAD_DATA_DIR": str(data), "MAD_LAKE__URL": str(lake),
           "MAD_STATE__URL": state_url, "MAD_ETL__BATCH_FILES": "3",
           "MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": "1GB",
           "MAD_ETL__ENGINE__DUCKDB__TEMP_DIRECTORY": str(data / "spill")}
    return subprocess.Popen([sys.executable, "-m", "mad.cli", "etl", "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes]) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()[-3000:]


def rows(lake: Path, dataset: str) -> list[tuple[Any, ...]]:
    files = sorted(str(p) for p in (lake / dataset).rglob("*.parquet")
                   if ".staging" not in p.parts)
    if not files:
        return []
    listing = ", ".join(f"'{f}'" for f in files)
    table = duckdb.sql(f"SELECT * FROM read_parquet([{listing}], hive_partitioning=true)")
    # the raw file's path differs between the two copies of the lake: keep its lake key
    cols = [f"replace(source_file, '{lake}/', '')" if c == "source_file" else f'"{c}"'
            for c in table.columns]
    # sorted on everything but the floats: compare them with `same`
    return sorted(table.project(", ".join(cols)).fetchall(),
                  key=float_blind)


def kill_when(proc: subprocess.Popen[bytes], seen: Callable[[], bool]) -> bool:
    """SIGKILL `proc` as soon as `seen()` holds; False if it ended first."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if seen():
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return True
        time.sleep(0.002)
    return False


def staged(lake: Path, pattern: str) -> Callable[[], bool]:
    """Whether `{lake}/.staging` holds something matching `pattern`."""
    staging = lake / ".staging"
    return lambda: staging.is_dir() and any(staging.glob(pattern))


Calm = tuple[Path, dict[str, list[tuple[Any, ...]]]]


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory,
         backfill: tuple[Path, dict[str, Any]]) -> Calm:
    """The raw lake, and every dataset's rows after one uninterrupted `mad etl run` over a
    copy of it (shared by the tests of this module)."""
    tmp = tmp_path_factory.mktemp("calm")
    raw = tmp / "raw"
    split_backfill(backfill[0], raw)
    lake = tmp / "lake"
    shutil.copytree(raw, lake)
    finish(etl(lake, tmp / "data", f"sqlite:///{tmp / 'state.db'}"))
    return raw, {dataset: rows(lake, dataset) for dataset in DATASETS}


def killed_then_rerun(tmp_path: Path, calm: Calm, state_url: str, moment: str) -> None:
    """A pass over a copy of the raw lake killed once `moment` shows in its staging folder,
    then run again; checks the lake holds the rows of the uninterrupted pass and nothing of
    the killed process is left."""
    raw, want = calm
    killed = tmp_path / "killed"
    shutil.copytree(raw, killed)
    proc = etl(killed, tmp_path / "data", state_url)
    assert kill_when(proc, staged(killed, moment)), f"the pass ended before {moment} showed"
    finish(etl(killed, tmp_path / "data", state_url))

    assert not (killed / ".staging").exists() or not any((killed / ".staging").iterdir())
    assert not list((tmp_path / "data" / "spill").glob("run-*")), "a spill folder was left"
    for dataset in DATASETS:
        assert same(rows(killed, dataset), want[dataset]), dataset


@pytest.mark.slow
def test_killed_run_then_restart_equals_one_uninterrupted_run(
    tmp_path: Path, calm: Calm, state_url: str,
) -> None:
    killed_then_rerun(tmp_path, calm, state_url, "events-*/out/*/*/*/*.parquet")


@pytest.mark.slow
def test_a_pass_killed_mid_aggregation_is_finished_by_the_next_one(
    tmp_path: Path, calm: Calm, state_url: str,
) -> None:
    """Aggregates are recomputed for the days the state database shows as not aggregated
    since their events changed, not only for the days the current pass wrote."""
    killed_then_rerun(tmp_path, calm, state_url, "aggregates-*")
