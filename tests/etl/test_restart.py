"""Killing `mad etl run` mid-write and running it again ends with the same lake as one
uninterrupted run, with the state database on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.etl.helpers import float_blind, same
from tests.pg_server import PgServer, postgres_fixture

pg = postgres_fixture()


def etl(lake: Path, data: Path, state_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MAD_DATA_DIR": str(data), "MAD_LAKE__URL": str(lake),
           "MAD_STATE__URL": state_url, "MAD_ETL__BATCH_FILES": "3",
           "MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": "1GB"}
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


def kill_mid_write(proc: subprocess.Popen[bytes], lake: Path) -> bool:
    """SIGKILL once a run has staged output (a write in progress); False if it ended first."""
    deadline = time.monotonic() + 300
    staging = lake / ".staging"
    while time.monotonic() < deadline and proc.poll() is None:
        if staging.is_dir() and any(staging.glob("events-*/out/*/*/*/*.parquet")):
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_killed_run_then_restart_equals_one_uninterrupted_run(
    tmp_path: Path, raw_lake: tuple[Path, list[Path]], database: str,
    request: pytest.FixtureRequest,
) -> None:
    source, _ = raw_lake
    calm, killed = tmp_path / "calm", tmp_path / "killed"
    shutil.copytree(source, calm)
    shutil.copytree(source, killed)
    if database == "sqlite":
        urls = [f"sqlite:///{tmp_path / name / 'state.db'}" for name in ("s1", "s2")]
    else:
        server: PgServer = request.getfixturevalue("pg")
        urls = [server.create_database(f"etl_{uuid.uuid4().hex[:10]}") for _ in range(2)]

    finish(etl(calm, tmp_path / "d1", urls[0]))

    proc = etl(killed, tmp_path / "d2", urls[1])
    interrupted = kill_mid_write(proc, killed)
    assert interrupted, "the run ended before it could be killed mid-write"
    finish(etl(killed, tmp_path / "d2", urls[1]))

    assert not (killed / ".staging").exists() or not any((killed / ".staging").iterdir())
    for dataset in ("md-transformed-logs", "md-transformed-metrics", "md-transformed-apm",
                    "md-quarantine", "md-aggregates"):
        assert same(rows(killed, dataset), rows(calm, dataset)), dataset
