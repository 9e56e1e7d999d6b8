"""Reconciliation from the raw writer to the lake: every ETL pass compares the lake with the
ledgers; a transformed file or a raw file deleted behind their backs fails loudly, naming the
partition and the count missing, and holds the day until the partition is rebuilt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.ingest.conftest import ApiServer
from tests.quality.conftest import etl_pass, settings_for

from mad import lake
from mad.detect.pipeline import QualityGate
from mad.etl.runner import EtlRunner
from mad.ingest.streams.embedded import EmbeddedStream
from mad.ingest.wiring import build_writer, open_configured_stream
from mad.state import EtlLedger, IngestAcks, QualityStore, RawFileLedger, open_state

pytestmark = pytest.mark.loses_data  # each test deletes a file behind the ledgers

LOGS = lake.transformed_dataset("log")


def failed(store: QualityStore) -> list[dict[str, Any]]:
    return [r for r in store.results() if r["check"] == "reconciliation"
            and r["status"] == "fail" and r["partition"] != "*"]


def test_a_transformed_file_deleted_behind_the_etls_back(
        tmp_path: Path, state_url: str, faulty: tuple[Path, dict[str, Any]],
        split: Callable[[Path, Path], list[Path]]) -> None:
    split(faulty[0], tmp_path / "lake")
    settings = settings_for(tmp_path, state_url)
    first, _ = etl_pass(settings)
    store = QualityStore(open_state(settings.state_url))
    assert not first.missing and failed(store) == []
    checked = [r for r in store.results() if r["metric"] == "partitions_missing_rows"]
    assert {r["dataset"] for r in checked} >= {LOGS, lake.AGGREGATES_DATASET}
    assert all(r["status"] == "pass" and r["value"] == 0 for r in checked)

    ledger = {(p["dataset"], p["partition"]): p for p in
              EtlLedger(open_state(settings.state_url)).partitions()}
    part = "date=2026-11-01/hour=01"
    victim = sorted((tmp_path / "lake" / LOGS / part).glob("*.parquet"))[0]
    victim.unlink()
    summary, _ = etl_pass(settings)
    rows = ledger[(LOGS, part)]["rows"]
    assert summary.missing == [f"{LOGS}/{part}: {rows} of {rows} rows missing: 0 of 1 files "
                               f"left (published by run {ledger[(LOGS, part)]['run_id']}); "
                               f"rebuild it with `mad etl reprocess --dataset {LOGS} "
                               f"--partition {part}`"]
    assert "reconciliation failed" in summary.line()
    assert [(r["dataset"], r["partition"], r["value"]) for r in failed(store)] == [
        (LOGS, part, float(rows))]
    assert (LOGS, part) in {(h["dataset"], h["partition"]) for h in store.held()}
    assert not QualityGate(store).passed("1h", "2026-11-01")

    runner = EtlRunner(settings)  # rebuilt from its raw files, the partition is whole again
    try:
        runner.reprocess(LOGS, part)
        again = runner.run_once()
    finally:
        runner.close()
    assert not again.missing and store.held() == []
    assert QualityGate(store).passed("1h", "2026-11-01")
    assert [d["decision"] for d in store.decisions() if d["partition"] == part] == [
        "released", "held"]


def test_a_raw_file_deleted_behind_the_writers_back(
        tmp_path: Path, clean: tuple[Path, dict[str, Any]]) -> None:
    settings = settings_for(tmp_path)
    lines = clean[0].read_bytes().splitlines()[:3000]
    with EmbeddedStream(tmp_path / "stream", shards=2) as stream:
        stream.append([(str(orjson.loads(x).get("service") or "unknown"), x) for x in lines])
        build_writer(settings, stream).drain()
    first, _ = etl_pass(settings)
    store = QualityStore(open_state(settings.state_url))
    assert first.rows_in == 3000 and not first.missing
    recorded = RawFileLedger(open_state(settings.state_url), "test").files(
        lake.raw_dataset("metric"))
    files = [r for r in store.results() if r["metric"] == "files_missing"]
    assert {r["dataset"] for r in files} >= {lake.raw_dataset(k) for k in lake.KINDS}
    assert all(r["status"] == "pass" for r in files)

    key = sorted(recorded)[0]
    (tmp_path / "lake" / key).unlink()
    summary, _ = etl_pass(settings)
    where = key.removeprefix(lake.raw_dataset("metric") + "/").rsplit("/", 1)[0]
    assert summary.missing == [
        f"{lake.raw_dataset('metric')}/{where}: 1 raw files with {recorded[key]} records "
        f"missing, e.g. {key}"]
    assert [(r["partition"], r["value"]) for r in failed(store)] == [
        (where, float(recorded[key]))]


def test_acknowledged_records_are_all_in_the_raw_lake(
        tmp_path: Path, clean: tuple[Path, dict[str, Any]]) -> None:
    """Events posted to the real ingest API (served by uvicorn, over the embedded stream with
    two shards), landed by the raw writer: the acknowledgements per shard and hour equal the
    stream records in the raw lake; a raw file deleted afterwards shows as acknowledged
    records missing from its shard and hour."""
    settings = settings_for(tmp_path, **{"ingest.stream.embedded.shards": 2})
    lines = clean[0].read_bytes().splitlines()[:3000]
    stream = open_configured_stream(settings)
    try:
        api = ApiServer(settings, stream)
        try:
            for i in range(0, len(lines), 500):
                got = api.post(b"\n".join(lines[i:i + 500]))
                assert got.status_code == 200 and got.json()["accepted"] == 500
        finally:
            api.stop()  # counts the last acknowledgements
        build_writer(settings, stream).drain()
    finally:
        stream.close()
    acks = IngestAcks(open_state(settings.state_url))
    acked = acks.acked()
    assert sum(n for n, _ in acked.values()) == 3000 and len({s for s, _ in acked}) == 2
    assert set(acks.landed_through()) == {s for s, _ in acked}

    first, _ = etl_pass(settings)
    store = QualityStore(open_state(settings.state_url))
    stream_rows = [r for r in store.results() if r["dataset"] == "stream"]
    assert [(r["partition"], r["status"], r["value"]) for r in stream_rows] == [("*", "pass", 0)]
    assert stream_rows[0]["detail"].startswith(f"{len(acked)} shard-hours compared, 0 wait")
    assert not first.missing

    files = RawFileLedger(open_state(settings.state_url), "test").landed()
    key, hour, shards = sorted(files)[0]
    (tmp_path / "lake" / key).unlink()
    summary, _ = etl_pass(settings)
    lost = [r for r in failed(store) if r["dataset"] == "stream"]
    at = f"{datetime.fromtimestamp(hour, UTC):%Y-%m-%dT%H}"
    assert sorted((r["partition"], r["value"]) for r in lost) == sorted(
        (f"shard={s}/hour={at}", float(n)) for s, n in shards.items())
    assert any("acknowledged by the ingest API" in m for m in summary.missing)


def test_aggregates_short_of_their_rows_hold_the_day_from_detection(
        tmp_path: Path, faulty: tuple[Path, dict[str, Any]],
        split: Callable[[Path, Path], list[Path]]) -> None:
    split(faulty[0], tmp_path / "lake")
    settings = settings_for(tmp_path)
    etl_pass(settings)
    store = QualityStore(open_state(settings.state_url))
    assert QualityGate(store).passed("1h", "2026-11-01")
    day = tmp_path / "lake" / lake.aggregates_prefix("1h") / "date=2026-11-01"
    sorted(day.glob("*.parquet"))[0].unlink()
    summary, _ = etl_pass(settings)
    assert [m.split(":")[0] for m in summary.missing] == [
        f"{lake.AGGREGATES_DATASET}/window=1h/date=2026-11-01"]
    assert not QualityGate(store).passed("1h", "2026-11-01")
    assert QualityGate(store).passed("1h", "2026-10-31")
    assert "the next pass recomputes it" in summary.missing[0]
    healed, _ = etl_pass(settings)  # derived data: recomputed, reconciled, released
    assert healed.days_aggregated == ["2026-11-01"] and not healed.missing
    assert QualityGate(store).passed("1h", "2026-11-01") and store.held() == []
