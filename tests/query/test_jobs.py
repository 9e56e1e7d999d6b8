"""ETL runs and detection passes as jobs, against the state database read with sqlite3; a
failed detection pass is recorded with its error."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mad.errors import ConfigError
from mad.query.access import QueryError
from mad.query.jobs import job_rates, jobs
from tests.query.conftest import BuiltLake, copy_lake, lake_settings


def sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_jobs_are_the_etl_runs_and_detection_passes(pipeline_lake: BuiltLake) -> None:
    got = jobs(pipeline_lake.settings)
    etl = sql(pipeline_lake.state_db, "SELECT run_id, plan, status, rows_in, rows_out, "
                                      "duplicates, late, attempt FROM etl_runs")
    det = sql(pipeline_lake.state_db, "SELECT run_id, window, status, points, anomalies "
                                      "FROM detect_runs")
    assert len(det) == 1 and det[0][2] == "succeeded" and det[0][4] > 0
    assert {j["id"] for j in got} == {r[0] for r in etl} | {r[0] for r in det}
    by_id = {j["id"]: j for j in got}
    for run_id, plan, status, rows_in, rows_out, dups, late, attempt in etl:
        j = by_id[run_id]
        assert (j["kind"], j["plan"], j["status"], j["rows_in"], j["rows_out"],
                j["duplicates"], j["late"], j["attempts"]) == (
            "etl", plan, status, rows_in, rows_out, dups, late, attempt)
    run_id, window, status, points, found = det[0]
    j = by_id[run_id]
    assert (j["kind"], j["plan"], j["status"], j["rows_in"], j["rows_out"]) == (
        "detect", f"detect_{window}", status, points, found)
    assert [j["started"] for j in got] == sorted((j["started"] for j in got), reverse=True)
    assert all(j["started"].tzinfo is UTC and j["ended"] >= j["started"] for j in got)
    assert [j["id"] for j in jobs(pipeline_lake.settings, kind="detect")] == [run_id]
    assert len(jobs(pipeline_lake.settings, limit=2)) == 2
    newest = got[0]["started"]
    assert jobs(pipeline_lake.settings, start=newest + timedelta(seconds=1)) == []
    assert [j["id"] for j in jobs(pipeline_lake.settings, end=newest)] == [
        j["id"] for j in got[1:]]
    for bad in ({"kind": "spark"}, {"limit": 0}, {"limit": 10**6}):
        with pytest.raises(QueryError):
            jobs(pipeline_lake.settings, **bad)


def test_job_rates_per_bucket(pipeline_lake: BuiltLake) -> None:
    got = jobs(pipeline_lake.settings)
    start = min(j["started"] for j in got) - timedelta(hours=1)
    end = max(j["started"] for j in got) + timedelta(hours=1)
    rates = job_rates(pipeline_lake.settings, start, end, "1h")
    assert {r["kind"] for r in rates} == {"etl", "detect"}
    for kind in ("etl", "detect"):
        mine = [r for r in rates if r["kind"] == kind]
        assert sum(r["ok"] for r in mine) == sum(
            1 for j in got if j["kind"] == kind and j["status"] == "succeeded")
        assert all(r["success_rate"] in (None, 1.0) for r in mine)
    with pytest.raises(QueryError):
        job_rates(pipeline_lake.settings, start, end, "2h")
    with pytest.raises(QueryError):
        job_rates(pipeline_lake.settings, start, start + timedelta(days=30), "1m")


def test_a_failed_detection_pass_is_a_failed_job(tmp_path: Path,
                                                 pipeline_lake: BuiltLake) -> None:
    built = copy_lake(pipeline_lake, tmp_path / "copy")
    con = sqlite3.connect(built.state_db)
    with con:
        for table in ("detect_series", "detect_meta", "detect_incidents", "detect_runs",
                      "detect_outbox", "detect_alerts_sent"):
            con.execute(f"DELETE FROM {table}")
    con.close()
    [anomalies] = list((built.lake / "md-anomalies").rglob("*.parquet"))
    anomalies.write_bytes(b"not parquet")  # the pass must merge into it, and cannot
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    env.update({"MAD_DATA_DIR": str(built.root), "MAD_DETECT__DETECTOR__ENSEMBLE__WARMUP": "30"})
    proc = subprocess.run([sys.executable, "-m", "mad.cli", "detect", "run"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout
    [failed] = jobs(built.settings, kind="detect")
    assert failed["status"] == "failed" and failed["error"]
    assert "\n" not in failed["error"]
    start = failed["started"] - timedelta(minutes=1)
    rates = job_rates(built.settings, start, start + timedelta(hours=1), "1h")
    assert [(r["ok"], r["failed"], r["success_rate"]) for r in rates
            if r["kind"] == "detect" and r["ok"] + r["failed"]] == [(0, 1, 0.0)]


def test_a_missing_state_database_is_one_error(tmp_path: Path) -> None:
    settings = lake_settings(tmp_path / "typo")
    with pytest.raises(ConfigError, match="no state database"):
        jobs(settings)
    with pytest.raises(ConfigError, match="no state database"):
        job_rates(settings, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2,
                                                                          tzinfo=UTC))
    assert not (tmp_path / "typo").exists()
