"""The ETL on an S3 lake (a real moto server): same rows as on a local lake, idempotent, and a
publish killed after its commit record is finished by the next pass, which then ends with the
rows of a local lake (the store's own recovery is in `test_partition_store_contract`)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mad import lake
from mad.config import AwsSettings, Settings, load_settings
from mad.errors import ConfigError
from mad.etl.discover import pending
from mad.etl.publish import PartitionStore, Publication
from mad.etl.runner import PLAN, QUARANTINE, EtlRunner
from mad.generate.raw_lake import split_backfill
from mad.stores import open_store
from tests.etl.helpers import float_blind, lake_connection, same

DATASETS = ("md-transformed-logs", "md-transformed-metrics", "md-transformed-apm",
            QUARANTINE, "md-aggregates")


def local_settings(tmp: Path, lake_dir: Path) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(tmp / "data"), "lake.url": str(lake_dir),
        "etl.engine.duckdb.memory_limit": "1GB", "etl.batch_files": 40,
    })


def s3_settings(tmp: Path, url: str, aws: AwsSettings) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(tmp / "data"), "lake.url": url, "etl.engine.duckdb.memory_limit": "1GB",
        "etl.batch_files": 40, "aws.endpoint_url": aws.endpoint_url, "aws.region": aws.region,
        "aws.access_key_id": aws.access_key_id, "aws.secret_access_key": aws.secret_access_key,
    })


def rows(parts: PartitionStore, dataset: str) -> list[tuple[Any, ...]]:
    """Every row of a dataset (Hive columns included), with `source_file` made relative to the
    lake, sorted by everything but the floats (compare with `same`)."""
    keys = sorted(parts.files(dataset + "/"))
    if not keys:
        return []
    con = lake_connection(parts)
    listing = ", ".join(f"'{parts.location(k)}'" for k in keys)
    table = con.sql(f"SELECT * FROM read_parquet([{listing}], hive_partitioning = true, "
                    f"hive_types_autocast = false)")
    prefix = parts.location("x")[:-1]
    cols = [f"replace(source_file, '{prefix}', '')" if c == "source_file" else f'"{c}"'
            for c in table.columns]
    out = table.project(", ".join(cols)).fetchall()
    con.close()
    return sorted(out, key=float_blind)


def event_ids(parts: PartitionStore) -> list[str]:
    ids: list[str] = []
    for dataset in DATASETS[:3]:
        keys = sorted(parts.files(dataset + "/"))
        con = lake_connection(parts)
        listing = ", ".join(f"'{parts.location(k)}'" for k in keys)
        ids += [r[0] for r in con.sql(f"SELECT event_id FROM read_parquet([{listing}])"
                                      ).fetchall()]
        con.close()
    return ids


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory,
              backfill: tuple[Path, dict[str, Any]]) -> tuple[Path, dict[str, list[Any]]]:
    """A raw lake, and the rows of every dataset after one pass over it on a local lake."""
    tmp = tmp_path_factory.mktemp("s3_reference")
    raw = tmp / "raw"
    split_backfill(backfill[0], raw)
    work = tmp / "lake"
    shutil.copytree(raw, work)
    runner = EtlRunner(local_settings(tmp, work))
    try:
        runner.run_once()
        return raw, {d: rows(runner.lake, d) for d in DATASETS}
    finally:
        runner.close()


def upload(raw: Path, url: str, aws: AwsSettings, which: list[Path] | None = None) -> None:
    store = open_store(url, aws, create=True)
    for f in which if which is not None else sorted(raw.rglob("part-*")):
        store.put(f.relative_to(raw).as_posix(), f.read_bytes())


def test_s3_lake_has_the_rows_of_a_local_lake_and_a_second_pass_writes_nothing(
    tmp_path: Path, reference: tuple[Path, dict[str, list[Any]]], bucket_url: str,
    aws: AwsSettings,
) -> None:
    raw, expected = reference
    upload(raw, bucket_url, aws)
    runner = EtlRunner(s3_settings(tmp_path, bucket_url, aws))
    try:
        first = runner.run_once()
        assert first.runs >= 3 and first.days_aggregated
        for dataset in DATASETS:
            assert same(rows(runner.lake, dataset), expected[dataset]), dataset
        ids = event_ids(runner.lake)
        assert len(ids) == len(set(ids)) == first.rows_out
        before = runner.store.sizes()
        second = runner.run_once()
        assert (second.runs, second.files, second.days_aggregated) == (0, 0, [])
        assert runner.store.sizes() == before
        assert not runner.store.list(".staging/")
    finally:
        runner.close()


def test_publish_killed_after_its_commit_record_is_finished_by_the_next_pass(
    tmp_path: Path, reference: tuple[Path, dict[str, list[Any]]], bucket_url: str,
    aws: AwsSettings,
) -> None:
    raw, expected = reference
    files = sorted(raw.rglob("part-*"), key=lambda f: lake.parse_key(
        f.relative_to(raw).as_posix()).start)
    half = len(files) // 2
    upload(raw, bucket_url, aws, files[:half])
    settings = s3_settings(tmp_path, bucket_url, aws)
    runner = EtlRunner(settings)
    try:
        runner.run_once()
    finally:
        runner.close()
    upload(raw, bucket_url, aws, files[half:])

    # A log run of the pending files, staged as a pass would, its files uploaded and its
    # commit record written; the process dies before deleting the replaced files, so readers
    # see old and new rows of a partition together until the next start rolls it forward.
    killed = EtlRunner(settings)
    try:
        todo = pending(killed.store, killed.ledger.done_keys(PLAN))
        batch = [f for f in todo if f.key.startswith(lake.raw_dataset("log") + "/")]
        run_id = killed.ledger.start(PLAN, killed.engine.name, [(f.key, f.bytes) for f in batch])
        staged = killed.stage_events("log", batch, run_id)
        publication: Publication = killed.lake.commit(killed.lake.prepare(
            run_id, {"events": staged.dataset}, {"quarantine": QUARANTINE}, staged.key))
        assert publication.record["remove"], "the run should replace partitions with rows"
        ids = event_ids(killed.lake)
        assert len(ids) > len(set(ids))
    finally:
        killed.close()
    restarted = EtlRunner(settings)
    try:
        summary = restarted.run_once()
        assert summary.runs >= 1
        ids = event_ids(restarted.lake)
        assert len(ids) == len(set(ids))
        for dataset in DATASETS:
            assert same(rows(restarted.lake, dataset), expected[dataset]), dataset
        assert not restarted.store.list(".staging/")
        assert all(r["status"] in ("succeeded", "failed")
                   for r in restarted.ledger.recent_runs(100))
    finally:
        restarted.close()


def test_runner_refuses_an_unknown_lake_scheme(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path / "data"),
                                                "lake.url": "gs://bucket/lake"})
    with pytest.raises(ConfigError, match="s3:// lake"):
        EtlRunner(settings)


def test_mad_etl_run_and_status_on_an_s3_lake(tmp_path: Path, bucket_url: str,
                                               aws: AwsSettings) -> None:
    store = open_store(bucket_url, aws, create=True)
    event = {"event_id": "e-1", "timestamp": "2026-11-01T06:10:00Z", "service": "auth",
             "event_type": "auth.token.issued", "kind": "log", "metrics": {"latency_ms": 5.0}}
    store.put(lake.raw_key("log", "auth", 1_793_512_800.0, gzip=False),
              (json.dumps(event) + "\n{broken\n").encode())
    zipped = gzip.compress((json.dumps({**event, "event_id": "e-2"}) + "\n").encode())
    store.put(lake.raw_key("log", "auth", 1_793_512_800.0), zipped)  # read through httpfs
    store.put(lake.raw_key("log", "auth", 1_793_512_800.0), zipped[:-6])  # cut: it waits
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"), "MAD_LAKE__URL": bucket_url,
           "MAD_AWS__ENDPOINT_URL": str(aws.endpoint_url), "MAD_AWS__REGION": aws.region,
           "MAD_AWS__ACCESS_KEY_ID": "testing", "MAD_AWS__SECRET_ACCESS_KEY": "testing"}
    run = subprocess.run([sys.executable, "-m", "mad.cli", "etl", "run"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "2 new events" in run.stdout and "1 quarantined" in run.stdout
    assert "1 left for the next pass" in run.stdout
    keys = store.list()
    assert any(k.startswith("md-transformed-logs/date=2026-11-01/hour=06/") for k in keys)
    assert any(k.startswith("md-quarantine/date=2026-11-01/hour=06/") for k in keys)
    assert any(k.startswith("md-aggregates/window=1m/date=2026-11-01/") for k in keys)
    status = subprocess.run([sys.executable, "-m", "mad.cli", "etl", "status"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "backlog: 1 raw file," in status.stdout and "succeeded" in status.stdout
    assert "0 quarantined whole, 1 waiting" in status.stdout
