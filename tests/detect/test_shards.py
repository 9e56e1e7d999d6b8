"""Detection across workers: series split into shards leased through the state database.

The same aggregates (the real ETL's, of a generated backfill with faults) scored by one
unsharded runner, by one runner holding 4 shards, by two runners sharing them, and by two
`mad detect run --watch` processes one of which is killed with SIGKILL mid-pass (state on
SQLite and on PostgreSQL): the same anomalies, incidents and alerts every time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.detect.test_pipeline import alerts, anomalies, incidents, make_settings, run
from tests.pg_server import postgres_fixture

from mad.config import Settings
from mad.detect.pipeline import DetectBusy, DetectRunner
from mad.detect.shards import shard_of
from mad.lake import ANOMALIES_DATASET, anomalies_window
from mad.query.detection import detect_status

pg = postgres_fixture()


def copy_lake(etl_lake: Path, settings: Settings) -> None:
    shutil.copytree(etl_lake / "md-aggregates", Path(settings.lake_url) / "md-aggregates")


def scored(tmp_path: Path, etl_lake: Path, name: str, state_url: str | None = None,
           **extra: Any) -> Settings:
    settings = make_settings(tmp_path / name, state_url or f"sqlite:///{tmp_path / name}.db",
                             **extra)
    copy_lake(etl_lake, settings)
    return settings


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory, etl_lake: Path) -> Settings:
    """One uninterrupted, unsharded run: what every sharded run must equal."""
    settings = scored(tmp_path_factory.mktemp("calm"), etl_lake, "calm")
    summary = run(settings)
    assert summary.anomalies > 0 and summary.changes > 0
    return settings


def shard_files(settings: Settings) -> list[str]:
    folder = Path(settings.lake_url) / ANOMALIES_DATASET
    return sorted(p.name for p in folder.rglob("*.parquet"))


def test_one_worker_with_four_shards_equals_the_unsharded_run(
    tmp_path: Path, etl_lake: Path, calm: Settings,
) -> None:
    sharded = scored(tmp_path, etl_lake, "four", **{"detect.shards": 4})
    summary = run(sharded)
    assert summary.changes > 0
    assert anomalies(sharded) == anomalies(calm)
    assert incidents(sharded) == incidents(calm)
    assert {a["dedup_key"] for a in alerts(sharded)} == {a["dedup_key"] for a in alerts(calm)}
    names = shard_files(sharded)
    assert names and all(n.startswith("part-1m-s") and n.endswith("of4.parquet") for n in names)
    assert all(anomalies_window(n) == "1m" for n in names)
    status = detect_status(sharded)
    rows = {r["shard"]: r for r in status["shards"]}
    assert set(rows) == {"s0of4", "s1of4", "s2of4", "s3of4", "incidents"}
    assert all(r["holder"] is None for r in rows.values())  # released on close
    ends = {r["complete_to"] for r in rows.values()}
    assert len(ends) == 1 and None not in ends  # every shard and the step at the same end
    assert sum(r["series"] for k, r in rows.items() if k != "incidents") == len(status["series"])


def test_two_workers_share_the_shards_and_equal_one_run(
    tmp_path: Path, etl_lake: Path, calm: Settings,
) -> None:
    settings = scored(tmp_path, etl_lake, "two", **{"detect.shards": 4,
                                                    "detect.checkpoint_s": 0})
    a, b = DetectRunner(settings), DetectRunner(settings)
    try:
        assert a.shards is not None and b.shards is not None
        # b takes every shard, a registers with none; at its next pass b gives two back
        assert len(b.shards.claim().held) == 4
        assert a.shards.claim().held == set()
        b.run_once()
        a.run_once()
        assert len(a.shards.held) == 2 and len(b.shards.held) == 2
        assert a.shards.held.isdisjoint(b.shards.held)
        scored_by_a = {k for k in a.progress.marks} if a.progress else set()
        assert scored_by_a and all(shard_of(*k, 4) in a.shards.held for k in scored_by_a)
        for _ in range(3):  # the incident step waits for both shards' "complete to"
            a.run_once()
            b.run_once()
    finally:
        a.close()
        b.close()
    assert anomalies(settings) == anomalies(calm)
    assert incidents(settings) == incidents(calm)


def test_a_sharded_and_an_unsharded_runner_refuse_each_other(
    tmp_path: Path, etl_lake: Path,
) -> None:
    plain = scored(tmp_path, etl_lake, "mixed")
    sharded = plain.model_copy(update={"detect": plain.detect.model_copy(update={"shards": 4})})
    first = DetectRunner(plain)
    try:
        first.lease.hold()
        with pytest.raises(DetectBusy, match="without shards"):
            DetectRunner(sharded).run_once()
    finally:
        first.close()
    other = DetectRunner(sharded)
    try:
        assert other.shards is not None
        other.shards.claim()
        with pytest.raises(DetectBusy, match=r"same detect\.shards"):
            DetectRunner(plain).run_once()
    finally:
        other.close()


def detect_watch(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MAD_DATA_DIR": str(settings.data_dir),
           "MAD_STATE__URL": settings.state_url, "MAD_DETECT__PARAMS": '{"warmup": 30}',
           "MAD_DETECT__BATCH_WINDOWS": "1", "MAD_DETECT__WATCH_INTERVAL_S": "1",
           "MAD_DETECT__SHARDS": "4", "MAD_DETECT__CHECKPOINT_S": "0"}
    return subprocess.Popen([sys.executable, "-m", "mad.cli", "detect", "run", "--watch"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_batch(proc: subprocess.Popen[bytes]) -> list[str]:
    assert proc.stdout is not None
    seen = []
    for line in iter(proc.stdout.readline, b""):
        seen.append(line.decode())
        if line.startswith(b"  20"):  # "  2026-11-01 00:00 .. 00:04 UTC: ..."
            return seen
    raise AssertionError(f"no batch was reported: {''.join(seen)[-3000:]}")


def status_json(settings: Settings) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    env.update({"MAD_DATA_DIR": str(settings.data_dir), "MAD_STATE__URL": settings.state_url,
                "MAD_DETECT__SHARDS": "4"})
    out = subprocess.run([sys.executable, "-m", "mad.cli", "detect", "status", "--format",
                          "json"], capture_output=True, timeout=120, env=env, check=True)
    return dict(orjson.loads(out.stdout))


@pytest.mark.slow
@pytest.mark.chaos
def test_a_killed_worker_s_shards_are_taken_over_and_nothing_changes(
    tmp_path: Path, etl_lake: Path, calm: Settings, state_url: str,
) -> None:
    settings = scored(tmp_path, etl_lake, "killed", state_url, **{"detect.shards": 4})
    end = detect_status(calm)["scored_to"]
    survivor = detect_watch(settings)
    victim = None
    try:
        wait_for_batch(survivor)
        victim = detect_watch(settings)
        # the survivor gives up half its shards at its next claim; the victim takes them
        wait_for_batch(victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(60)
        taken = status_json(settings)
        lost = [r for r in taken["shards"] if r["holder"] and
                r["holder"].endswith(f":{victim.pid}")]
        assert lost, taken["shards"]  # the victim held shards when it died
        assert any(r["complete_to"] != end for r in taken["shards"])  # mid-pass
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            rows = status_json(settings)["shards"]
            if all(r["complete_to"] == end and r["holder"] and
                   r["holder"].endswith(f":{survivor.pid}") for r in rows):
                break
            assert survivor.poll() is None, "the survivor stopped"
            time.sleep(2)
        else:
            raise AssertionError(f"the survivor did not take over: {rows}")
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (victim, survivor):
            if proc is not None:
                try:
                    proc.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
    assert survivor.returncode == 0
    assert anomalies(settings) == anomalies(calm)
    assert incidents(settings) == incidents(calm)
    sent = alerts(settings)  # at least once per change; a resend carries the same key
    assert {a["dedup_key"]: a for a in sent} == {a["dedup_key"]: a for a in alerts(calm)}
