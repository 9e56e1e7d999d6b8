"""A late event (event time three hours before its ingest hour), read in a later pass, lands
in its event-time partition and the aggregate windows of that hour are recomputed."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb

from mad import lake
from mad.config import load_settings
from mad.etl.runner import AGGREGATES, EtlRunner
from mad.stores import open_store

HOUR6 = 1_793_512_800.0  # 2026-11-01T06:00:00Z
HOUR9 = HOUR6 + 3 * 3600


def event(event_id: str, ts: str, latency: float) -> str:
    return json.dumps({"event_id": event_id, "timestamp": ts, "service": "auth",
                       "event_type": "auth.token.issued", "kind": "log",
                       "metrics": {"latency_ms": latency}}) + "\n"


def windows(lake_dir: Path, window: str) -> dict[tuple[datetime, str, str], tuple[int, float]]:
    """(window start, service, series) -> (count, avg) of one window size."""
    files = sorted((lake_dir / AGGREGATES / f"window={window}").rglob("*.parquet"))
    listing = ", ".join(f"'{f}'" for f in files)
    got = duckdb.sql(f'SELECT window_start, service, series, "count", avg '
                     f"FROM read_parquet([{listing}])").fetchall()
    return {(r[0], r[1], r[2]): (int(r[3]), float(r[4])) for r in got}


def test_late_event_lands_in_its_hour_and_its_windows_are_recomputed(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    store = open_store(str(lake_dir))
    store.put(lake.raw_key("log", "auth", HOUR6, gzip=False), (
        event("on-time-1", "2026-11-01T06:10:05Z", 10.0)
        + event("on-time-2", "2026-11-01T06:10:30Z", 20.0)
        + event("other-window", "2026-11-01T06:40:00Z", 40.0)).encode())
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path / "data"),
                                                "lake.url": str(lake_dir)})
    runner = EtlRunner(settings)
    try:
        first = runner.run_once()
        assert first.rows_out == 3 and first.days_aggregated == ["2026-11-01"]
        minute = windows(lake_dir, "1m")
        hour = windows(lake_dir, "1h")
        w1010 = datetime(2026, 11, 1, 6, 10)
        assert minute[(w1010, "auth", "latency_ms")] == (2, 15.0)
        assert minute[(w1010, "auth", "events")][0] == 2

        # three hours later a file arrives with one more event of 06:10
        store.put(lake.raw_key("log", "auth", HOUR9, gzip=False),
                  event("late-1", "2026-11-01T06:10:50Z", 60.0).encode())
        second = runner.run_once()
        assert (second.runs, second.rows_out, second.late) == (1, 1, 1)
        assert second.days_aggregated == ["2026-11-01"]
    finally:
        runner.close()

    logs = lake_dir / "md-transformed-logs" / "date=2026-11-01"
    assert sorted(p.name for p in logs.iterdir()) == ["hour=06"]
    ids = duckdb.sql(f"SELECT event_id FROM read_parquet('{logs}/hour=06/*.parquet')").fetchall()
    assert sorted(r[0] for r in ids) == ["late-1", "on-time-1", "on-time-2", "other-window"]

    after = windows(lake_dir, "1m")
    assert after[(w1010, "auth", "latency_ms")] == (3, 30.0)
    assert after[(w1010, "auth", "events")][0] == 3
    unchanged = {k: v for k, v in minute.items() if k[0] != w1010}
    assert {k: v for k, v in after.items() if k[0] != w1010} == unchanged
    w6 = datetime(2026, 11, 1, 6)
    assert windows(lake_dir, "1h")[(w6, "auth", "latency_ms")][0] == \
        hour[(w6, "auth", "latency_ms")][0] + 1
