"""`overview` and `rates` against what the lake and the state database hold, read
independently (sqlite3 on the state file, DuckDB on the Parquet files)."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mad.errors import ConfigError
from mad.query.access import QueryError
from mad.query.overview import overview, rates
from tests.query.conftest import REJECTED, BuiltLake, duck, lake_settings


def sql(built: BuiltLake, query: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(built.state_db)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_overview_numbers_are_what_the_lake_and_state_hold(pipeline_lake: BuiltLake) -> None:
    got = overview(pipeline_lake.settings)
    lake = pipeline_lake.lake
    ingest = got["ingest"]
    [(accepted,)] = sql(pipeline_lake, "SELECT sum(records) FROM raw_files WHERE dataset "
                                       "IN ('md-raw-logs', 'md-raw-metrics', 'md-raw-apm')")
    assert ingest["accepted"] == accepted > 0
    assert ingest["rejected"] == len(REJECTED)
    assert ingest["rejected_by_reason"] == {"invalid_json": 2, "missing_field": 1}
    assert ingest["stream"] is None  # no stream was run here: said so, not raised
    assert any(e.startswith("stream: no embedded stream") for e in got["errors"])
    raw = got["raw"]
    for dataset, files, records in sql(pipeline_lake, "SELECT dataset, count(*), "
                                                      "sum(records) FROM raw_files GROUP BY 1"):
        assert (raw[dataset]["files"], raw[dataset]["records"]) == (files, records)

    etl = got["etl"]
    [(ok, failed)] = sql(pipeline_lake, "SELECT sum(status = 'succeeded'), "
                                        "sum(status = 'failed') FROM etl_runs")
    assert (etl["runs_ok"], etl["runs_failed"]) == (ok, failed)
    [(rows_in, rows_out, dups, late)] = sql(pipeline_lake, "SELECT sum(rows_in), "
                                            "sum(rows_out), sum(duplicates), sum(late) FROM "
                                            "etl_runs WHERE plan = 'events'")
    assert (etl["rows_in"], etl["rows_out"], etl["duplicates"], etl["late"]) == (
        rows_in, rows_out, dups, late)
    assert etl["pending_raw_files"] == 0
    reasons = dict(duck(f"SELECT reason, count(*) FROM read_parquet("
                              f"'{lake}/md-quarantine/*/*/*.parquet') GROUP BY 1"))
    assert etl["quarantined"] == reasons and sum(reasons.values()) > 0
    raw_bytes = sum(folder_bytes(lake / d) for d in ("md-raw-logs", "md-raw-metrics",
                                                    "md-raw-apm"))
    parquet = sum(folder_bytes(lake / d) for d in ("md-transformed-logs",
                                                  "md-transformed-metrics",
                                                  "md-transformed-apm"))
    assert (etl["raw_bytes"], etl["parquet_bytes"]) == (raw_bytes, parquet)
    assert etl["compression_ratio"] == pytest.approx(raw_bytes / parquet)

    detect = got["detect"]
    [(newest,)] = duck(f"SELECT max(window_start) FROM read_parquet("
                             f"'{lake}/md-aggregates/window=1m/*/*.parquet')")
    [(marks, last_mark)] = sql(pipeline_lake, "SELECT count(*), max(watermark) FROM "
                                              "detect_series WHERE window = '1m'")
    assert detect["newest_window"] == newest.replace(tzinfo=UTC)
    assert detect["scored_to"] == datetime.fromisoformat(last_mark).replace(tzinfo=UTC)
    # the newest windows wait for the event-time watermark (allowed lateness, slow hosts)
    lag = (newest.replace(tzinfo=UTC) - detect["scored_to"]).total_seconds()
    assert detect["lag_s"] == lag and lag >= 60.0 and detect["series"] == marks
    # every scored window was complete: the last one ends by the watermark's complete_to
    assert detect["complete_to"] is not None and detect["complete_to"] >= detect["scored_to"]
    assert (detect["late_windows"], detect["late_events"]) == (0, 0)
    [(open_incidents,)] = sql(pipeline_lake, "SELECT count(*) FROM detect_incidents "
                                             "WHERE status = 'open'")
    assert detect["open_incidents"] == open_incidents
    assert detect["pending_alerts"] == 0 and detect["failed_alerts"] == 0
    assert got["components"] == []  # no supervisor ran here


def test_rates_count_events_in_and_rows_out_per_bucket(pipeline_lake: BuiltLake) -> None:
    [(first,)] = sql(pipeline_lake, "SELECT min(written_at) FROM raw_files")
    start = datetime.fromisoformat(first).replace(tzinfo=UTC) - timedelta(minutes=3)
    end = datetime.now(UTC) + timedelta(minutes=1)
    got = rates(pipeline_lake.settings, start, end, "1m")
    assert [r["bucket_start"] for r in got] == sorted(r["bucket_start"] for r in got)
    assert all(b["bucket_start"] - a["bucket_start"] == timedelta(minutes=1)
               for a, b in itertools.pairwise(got))
    [(events_in,)] = sql(pipeline_lake, "SELECT sum(records) FROM raw_files WHERE dataset "
                                        "!= 'md-raw-errors'")
    [(rows_out,)] = sql(pipeline_lake, "SELECT sum(rows_out) FROM etl_runs WHERE "
                                       "plan = 'events' AND status = 'succeeded'")
    assert sum(r["events_in"] for r in got) == events_in
    assert sum(r["rejected"] for r in got) == len(REJECTED)
    assert sum(r["rows_out"] for r in got) == rows_out
    assert sum(r["events_in"] for r in rates(pipeline_lake.settings, start - timedelta(
        days=1), start, "1h")) == 0
    for a, b, bucket in ((start, end, "7m"), (end, start, "1m"),
                         (start - timedelta(days=60), end, "1m")):
        with pytest.raises(QueryError):
            rates(pipeline_lake.settings, a, b, bucket)


def test_a_missing_lake_and_state_are_said_and_nothing_is_created(tmp_path: Path) -> None:
    settings = lake_settings(tmp_path / "typo")
    got = overview(settings)
    assert any(e.startswith("lake: no lake at") for e in got["errors"])
    assert any("no state database" in e for e in got["errors"])
    assert got["ingest"]["accepted"] == 0 and got["etl"]["runs_ok"] == 0
    assert all("\n" not in e for e in got["errors"])
    with pytest.raises(ConfigError, match="no state database"):
        rates(settings, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    assert not (tmp_path / "typo").exists()
