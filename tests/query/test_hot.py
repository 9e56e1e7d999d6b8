"""The query layer's contract over both hot stores and a local and an S3 lake: the same calls
give the same rows whether the range lies in the hot store, in the lake, or across the
boundary; after the hot store is wiped, and after it is refilled, the same again.

The pipeline lake holds 2026-11-01 00:00-02:00; the feed's clock stands at 02:10 with a
horizon of 1 h, so the hot store holds the hours 01:00 and 02:00 and the lake alone answers
for 00:00."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mad.config import Settings, load_settings
from mad.hotstore import open_hot
from mad.hotstore.feed import HotFeed
from mad.query import hot as hot_reads
from mad.query.series import aggregates, latest, series
from mad.query.services import anomalies, service_metrics
from mad.stores import open_store
from tests.query.conftest import BuiltLake, copy_lake
from tests.redis_server import RedisServer, redis_fixture

redis_server = redis_fixture()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CLOCK = (T0 + timedelta(hours=2, minutes=10)).timestamp()
RANGES = {
    "hot": (T0 + timedelta(hours=1, minutes=5), T0 + timedelta(hours=1, minutes=50)),
    "lake": (T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)),
    "across": (T0 + timedelta(minutes=20), T0 + timedelta(hours=1, minutes=30)),
    "all": (T0 - timedelta(hours=1), T0 + timedelta(hours=3)),
}
SOURCES = {"hot": "hot", "lake": "lake", "across": "hot+lake", "all": "hot+lake"}


@pytest.fixture(params=["embedded", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "embedded":
        return {"store.hot.backend": "embedded"}
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    return {"store.hot.backend": "redis", "store.hot.redis.url": server.url}


@pytest.fixture(params=["local", "s3"])
def lake_root(request: pytest.FixtureRequest, pipeline_lake: BuiltLake,
              tmp_path: Path) -> dict[str, Any]:
    """Settings of a copy of the pipeline lake, on disk or in a moto bucket."""
    built = copy_lake(pipeline_lake, tmp_path / "copy")
    if request.param == "local":
        return {"data_dir": str(built.root)}
    aws = request.getfixturevalue("aws")
    url = request.getfixturevalue("bucket_url")
    bucket = open_store(url, aws, create=True)
    local = open_store(str(built.lake))
    for key in local.list(""):
        bucket.put(key, local.get(key))
    return {"data_dir": str(built.root), "lake.url": url,
            "aws.endpoint_url": aws.endpoint_url, "aws.access_key_id": "testing",
            "aws.secret_access_key": "testing", "aws.region": aws.region}


def settings_of(layers: dict[str, Any], **extra: Any) -> Settings:
    return load_settings(env={}, overrides={
        **layers, "store.horizon_h": 1, "detect.detector.ensemble.warmup": 30, **extra})


@pytest.fixture
def both(backend: dict[str, Any], lake_root: dict[str, Any]) -> Iterator[tuple[Settings,
                                                                               Settings]]:
    """Settings with the hot store, and the same with reads from the lake alone."""
    hot_reads.forget()
    yield settings_of({**lake_root, **backend}), settings_of(
        {**lake_root, **backend}, **{"store.enabled": False})
    hot_reads.forget()


def calls(settings: Settings, start: datetime, end: datetime) -> dict[str, Any]:
    """Every read that goes through the hot store, over `[start, end)`."""
    return {
        "series": list(series(settings, "1m", "gateway", "duration_ms", start, end)),
        "aggregates_5m": list(aggregates(settings, "5m", start, end)),
        "one_service": list(service_metrics(settings, "1m", start, end, ["payments"])),
        "overview": list(service_metrics(settings, "5m", start, end)),
        "anomalies": list(anomalies(settings, start, end)),
        "anomalies_1m": list(anomalies(settings, start, end, window="1m")),
    }


def sources(settings: Settings, start: datetime, end: datetime) -> set[str]:
    return {hot_reads.split(settings, "aggregates", w, start, end).source
            for w in ("1m", "5m", "1h")}


def test_the_same_rows_from_the_hot_store_the_lake_and_across(
        both: tuple[Settings, Settings]) -> None:
    with_hot, lake_only = both
    report = HotFeed(with_hot, clock=lambda: CLOCK).sync()
    assert report.error is None and report.rows_written > 0, report.line()
    for name, (start, end) in RANGES.items():
        assert sources(with_hot, start, end) == {SOURCES[name]}, name
        assert series(with_hot, "1m", "gateway", "duration_ms", start, end).source == \
            SOURCES[name]
        assert service_metrics(lake_only, "1m", start, end).source == "lake"
        expected = calls(lake_only, start, end)
        assert expected["series"] and expected["overview"], f"{name}: nothing to compare"
        assert calls(with_hot, start, end) == expected, name
    assert any(calls(lake_only, *RANGES["all"])["anomalies"])
    later = datetime.fromtimestamp(CLOCK, UTC)
    assert latest(with_hot, "1m", "gateway", now=later) == latest(
        lake_only, "1m", "gateway", now=later)
    assert latest(with_hot, "1m", "gateway", now=later)


def test_wiped_then_refilled_the_same_again(both: tuple[Settings, Settings]) -> None:
    with_hot, lake_only = both
    feed = HotFeed(with_hot, clock=lambda: CLOCK)
    first = feed.sync()
    expected = {name: calls(lake_only, *span) for name, span in RANGES.items()}
    again = feed.sync()
    assert again.hours_written == 0 and again.hours_checked == first.hours_checked
    open_hot(with_hot, create=True).wipe()
    hot_reads.forget()
    for name, span in RANGES.items():
        assert sources(with_hot, *span) == {"lake"}
        assert calls(with_hot, *span) == expected[name], name
    refill = feed.sync()
    assert refill.hours_written == first.hours_written
    for name, span in RANGES.items():
        assert sources(with_hot, *span) == {SOURCES[name]}
        assert calls(with_hot, *span) == expected[name], name


def test_only_the_hours_that_changed_are_replaced(pipeline_lake: BuiltLake,
                                                  tmp_path: Path) -> None:
    built = copy_lake(pipeline_lake, tmp_path / "copy")
    settings = settings_of({"data_dir": str(built.root)})
    feed = HotFeed(settings, clock=lambda: CLOCK)
    feed.sync(["aggregates"])
    day = built.lake / "md-aggregates" / "window=1h" / "date=2026-11-01"
    files = sorted(day.glob("*.parquet"))
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    out = tmp_path / "changed.parquet"
    con.execute(f"COPY (SELECT * REPLACE (CASE WHEN hour(window_start) = 1 THEN avg + 1 "
                f"ELSE avg END AS avg) FROM read_parquet({[str(f) for f in files]})) "
                f"TO '{out}' (FORMAT parquet)")
    con.close()
    for f in files:
        f.unlink()
    out.rename(day / "part-0.parquet")
    report = feed.sync(["aggregates"], days=["2026-11-01"])
    assert report.hours_written == 1, report
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    hot_reads.forget()
    assert list(aggregates(settings, "1h", start, end)) == list(aggregates(
        settings_of({"data_dir": str(built.root)}, **{"store.enabled": False}), "1h",
        start, end))


def test_mad_store_status_sync_and_wipe(pipeline_lake: BuiltLake, tmp_path: Path) -> None:
    """Through the real CLI: sync fills the horizon (here held empty: the pipeline lake is
    older than the last 24 h), status shows the hours, wipe needs --yes and empties it."""
    import json
    import subprocess
    import sys

    built = copy_lake(pipeline_lake, tmp_path / "copy")

    def mad(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mad.cli", "store", *args], text=True,
                              capture_output=True, timeout=120,
                              env={"MAD_DATA_DIR": str(built.root), "PATH": "/usr/bin:/bin"})

    assert json.loads(mad("status", "--format", "json").stdout)["held"] == []
    synced = mad("sync")
    assert synced.returncode == 0 and "hours replaced" in synced.stdout, synced.stderr
    held = json.loads(mad("status", "--format", "json").stdout)
    assert held["up"] and {h["dataset"] for h in held["held"]} == {"aggregates"}
    assert all(h["hours"] in (24, 25) for h in held["held"])
    refused = mad("wipe")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert mad("wipe", "--yes").returncode == 0
    assert json.loads(mad("status", "--format", "json").stdout)["held"] == []
    assert mad("status", "--format", "xml").returncode == 2


def test_held_days_are_left_out_of_the_hot_rows_too(pipeline_lake: BuiltLake,
                                                    tmp_path: Path) -> None:
    """A held transformed hour hides its whole day of aggregates and anomalies: the hot
    store's rows of that day are left out exactly as the lake's are."""
    from mad import lake
    from mad.state import open_state
    from mad.state.quality import quality_gate

    built = copy_lake(pipeline_lake, tmp_path / "copy")
    with_hot = settings_of({"data_dir": str(built.root)})
    lake_only = settings_of({"data_dir": str(built.root)}, **{"store.enabled": False})
    HotFeed(with_hot, clock=lambda: CLOCK).sync()
    engine = open_state(with_hot.state_url)
    with engine.begin() as conn:  # as the gate holds one
        conn.execute(quality_gate.update().where(
            (quality_gate.c.dataset == lake.transformed_dataset("log"))
            & (quality_gate.c.partition == "date=2026-11-01/hour=01")).values(
            status="held", reason="test", updated_at=datetime.now(UTC)))
    engine.dispose()
    hot_reads.forget()
    start, end = RANGES["all"]
    held = aggregates(with_hot, "1m", start, end)
    assert held.held and held.source == "hot+lake"
    assert all(r["window_start"].date().isoformat() != "2026-11-01" for r in held)
    assert calls(with_hot, start, end) == calls(lake_only, start, end)
