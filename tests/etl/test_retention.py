"""Retention on a local lake: partitions past `lake.retention` are listed, then deleted with
`--apply`; the ledgers forget them first, so the next pass reconciles; raw files the ETL has
not read are kept whatever their age; a dry run deletes nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import boto3

from mad import lake
from mad.config import AwsSettings, load_settings
from mad.etl.runner import EtlRunner
from mad.state import EtlLedger, QualityStore, open_state
from mad.stores import open_store

TODAY = date(2026, 11, 20)  # the backfill is of 2026-10-31 and 2026-11-01


def settings(root: Path, **retention: float):  # type: ignore[no-untyped-def]
    return load_settings(env={}, overrides={
        "data_dir": str(root / "data"), "lake.url": str(root / "lake"),
        **{f"lake.retention.{k}": v for k, v in retention.items()}})


def files(root: Path, dataset: str) -> list[Path]:
    return sorted(p for p in (root / "lake" / dataset).rglob("*") if p.is_file())


def test_expired_partitions_go_and_the_next_pass_reconciles(
        tmp_path: Path, raw_lake: tuple[Path, list[Path]]) -> None:
    lake_dir, _ = raw_lake
    shutil.move(str(lake_dir), str(tmp_path / "lake"))
    first = EtlRunner(settings(tmp_path))
    try:
        first.run_once()
    finally:
        first.close()
    unread = tmp_path / "lake" / lake.raw_key("log", "auth", 1_793_491_200.0, gzip=False)
    unread.parent.mkdir(parents=True, exist_ok=True)  # 2026-11-01 00:00, not read yet
    unread.write_text(files(tmp_path, lake.raw_dataset("log"))[0].read_text())

    runner = EtlRunner(settings(tmp_path, transformed=10, quarantine=10, aggregates=0))
    try:
        dry = runner.retention(today=TODAY)
        assert not dry.applied and dry.expired
        assert all((tmp_path / "lake" / k).exists() for e in dry.expired for k in e.files)
        assert {e.dataset for e in dry.expired} == {
            *lake.RAW_DATASETS.values(), *lake.TRANSFORMED_DATASETS.values(),
            lake.QUARANTINE_DATASET}  # aggregates are kept forever (0)
        assert [str(tmp_path / "lake" / k) for k in dry.kept_unread] == [str(unread)]

        done = runner.retention(apply=True, today=TODAY)
        assert done.applied and "deleted" in done.line()
        for kind in lake.KINDS:
            assert files(tmp_path, lake.transformed_dataset(kind)) == []
        assert files(tmp_path, lake.raw_dataset("log")) == [unread]
        assert files(tmp_path, lake.AGGREGATES_DATASET)  # kept
        ledger = EtlLedger(open_state(runner.settings.state_url))
        assert {p["dataset"] for p in ledger.partitions()} == {lake.AGGREGATES_DATASET}

        after = runner.run_once()  # reads the unread file; nothing is missing
        assert after.files == 1 and not after.missing
    finally:
        runner.close()
    store = QualityStore(open_state(runner.settings.state_url))
    assert [r for r in store.results() if r["check"] == "reconciliation"
            and r["status"] == "fail"] == []


def test_the_cli_lists_then_applies(tmp_path: Path, raw_lake: tuple[Path, list[Path]]) -> None:
    lake_dir, _ = raw_lake
    shutil.move(str(lake_dir), str(tmp_path / "lake"))
    env = {"MAD_DATA_DIR": str(tmp_path / "data"), "MAD_LAKE__URL": str(tmp_path / "lake"),
           "MAD_LAKE__RETENTION__RAW": "0.5", "PATH": "/usr/bin:/bin"}
    mad = [sys.executable, "-m", "mad.cli"]
    assert subprocess.run([*mad, "etl", "run"], env=env, capture_output=True,
                          timeout=300).returncode == 0
    listed = subprocess.run([*mad, "lake", "retention"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "expired  md-raw-logs/service=" in listed.stdout
    assert "would delete (--apply deletes them)" in listed.stdout
    assert files(tmp_path, lake.raw_dataset("log"))
    applied = subprocess.run([*mad, "lake", "retention", "--apply"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert applied.returncode == 0 and "retention: deleted" in applied.stdout
    for kind in lake.KINDS:
        assert files(tmp_path, lake.raw_dataset(kind)) == []
        assert files(tmp_path, lake.transformed_dataset(kind))  # 90 days: kept


def test_on_s3_the_policy_becomes_the_buckets_lifecycle_rules(
        tmp_path: Path, aws: AwsSettings, bucket_url: str) -> None:
    """On an S3 lake (the moto server) `--apply` writes one lifecycle rule per dataset, read
    back from the bucket; a rule of someone else's stays; nothing is deleted by hand."""
    store = open_store(bucket_url, aws, create=True)
    store.put(lake.raw_key("log", "auth", 1_793_491_200.0, gzip=False), b'{"a": 1}\n')
    s3 = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name=aws.region,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = bucket_url.removeprefix("s3://").split("/")[0]
    theirs = {"ID": "their-logs", "Filter": {"Prefix": "elsewhere/"}, "Status": "Enabled",
              "Expiration": {"Days": 3}}
    s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                          LifecycleConfiguration={"Rules": [theirs]})
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "data"), "lake.url": bucket_url,
        "lake.retention.anomalies": 0, "aws.endpoint_url": aws.endpoint_url,
        "aws.region": aws.region, "aws.access_key_id": "testing",
        "aws.secret_access_key": "testing"})
    runner = EtlRunner(settings)
    try:
        report = runner.retention(apply=True, today=TODAY)
    finally:
        runner.close()
    assert report.applied and "lifecycle rules written" in report.line()
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    mine = {r["Filter"]["Prefix"]: r["Expiration"]["Days"] for r in rules
            if r["ID"] != "their-logs"}
    assert mine == {f"lake/{lake.raw_dataset(k)}/": 8 for k in lake.KINDS} | {
        f"lake/{lake.transformed_dataset(k)}/": 91 for k in lake.KINDS} | {
        f"lake/{lake.ERRORS_DATASET}/": 31, f"lake/{lake.QUARANTINE_DATASET}/": 91,
        f"lake/{lake.AGGREGATES_DATASET}/": 91}  # anomalies kept forever: no rule
    assert theirs in rules
    assert store.list(lake.raw_dataset("log") + "/")  # the store expires it, not us
