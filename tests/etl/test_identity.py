"""Which event an `event_id` names, on hand-written lines through the events plan:

- a line giving an identity field twice at its top level is quarantined as `duplicate_key`
  (the ingest API's rule), however the name is spelled;
- a copy of an id in the same event hour is a duplicate (dropped and counted);
- a copy in another event hour, in the same run or in a partition of the lake within the
  dedup horizon, is quarantined as `reused_event_id` and counted;
- a raw file given as unreadable is one `unreadable_file` row.

`IdentityCase` is also run on Spark by `test_events_parity.py` (the same rows both ways)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from mad.config import load_settings
from mad.etl.engines import Engine
from mad.etl.runner import EtlRunner
from mad.etl.transforms.events import events_plan
from mad.state import EtlLedger, open_state

HOUR_DIR = "md-raw-logs/service=auth/year=2026/month=11/day=01/hour=08"
BASE = {"service": "auth", "event_type": "auth.login.succeeded", "kind": "log"}


def line(event_id: str, minute: str, **more: Any) -> str:
    return json.dumps({"event_id": event_id, "timestamp": f"2026-11-01T{minute}:00Z",
                       **BASE, **more})


def raw_file(folder: Path, name: str, lines: list[str]) -> str:
    path = folder / HOUR_DIR / f"part-{name * 32}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@dataclass
class IdentityCase:
    """Inputs for one events run: new lines in hours 06 and 07, the rows of those hours
    already in the lake (`existing`), the ids of hour 05 (`horizon`), one unreadable file."""

    raw: list[str]
    datasets: dict[str, list[str]]
    unreadable: list[tuple[str, datetime | None]]

    @staticmethod
    def build(engine: Engine, tmp_path: Path) -> IdentityCase:
        seed = raw_file(tmp_path / "seed", "0", [
            line("kept-06", "06:01"), line("kept-07", "07:01"), line("horizon-05", "05:01")])
        engine.execute(events_plan("log"), [seed], {}, str(tmp_path / "seed" / "out"))
        parts = sorted(str(p) for p in (tmp_path / "seed" / "out" / "events").rglob("*.parquet"))
        existing = [p for p in parts if "hour=05" not in p]
        horizon = [p for p in parts if "hour=05" in p]
        raw = raw_file(tmp_path / "lake", "a", [
            line("ok-1", "06:10"),
            line("ok-1", "06:10"),  # a re-send: duplicate
            line("ok-2", "06:20"),
            line("ok-2", "07:20"),  # the same id an hour later: reused
            line("kept-06", "06:30"),  # in the lake, same hour: duplicate
            line("kept-07", "06:40"),  # in the lake, another hour: reused
            line("horizon-05", "06:50"),  # in the lake within the horizon: reused
            '{"event_id": "d1", "timestamp": "2026-11-01T06:11:00Z", "service": "auth", '
            '"event_type": "auth.login.succeeded", "kind": "log", "event_id": "d2"}',
            '{"event_id": "d3", "timestamp": "2026-11-01T06:12:00Z", "service": "auth", '
            '"event_type": "auth.login.succeeded", "kind": "log", "kind": "metric"}',
            '{"event_id": "d4", "timestamp": "2026-11-01T06:13:00Z", "service": "auth", '
            '"event_type": "auth.login.succeeded", "kind": "log", "event\\u005fid": "d5"}',
            '{"event_id": "n1", "timestamp": "2026-11-01T06:14:00Z", "service": "auth", '
            '"event_type": "auth.login.succeeded", "kind": "log", '
            '"trace": {"kind": "a", "span": "b"}, "note": "kind"}',  # names elsewhere: fine
        ])
        bad = str(tmp_path / "lake" / HOUR_DIR / ("part-" + "b" * 32 + ".jsonl.gz"))
        return IdentityCase([raw], {"existing": existing, "horizon": horizon},
                            [(bad, datetime(2026, 11, 1, 8))])

    def run(self, engine: Engine, out: Path) -> dict[str, int]:
        return engine.execute(events_plan("log", self.unreadable), self.raw, self.datasets,
                              str(out))


def quarantine(out: Path) -> list[tuple[Any, ...]]:
    return duckdb.sql(f"SELECT reason, line_no, line IS NULL, date, hour FROM read_parquet("
                      f"'{out}/quarantine/*/*/*.parquet', hive_partitioning = true, "
                      f"hive_types_autocast = false) ORDER BY line_no").fetchall()


def test_identity_of_events(engine: Engine, tmp_path: Path) -> None:
    case = IdentityCase.build(engine, tmp_path)
    counts = case.run(engine, tmp_path / "out")
    assert quarantine(tmp_path / "out") == [
        ("unreadable_file", 0, True, "2026-11-01", "08"),
        ("reused_event_id", 4, False, "2026-11-01", "08"),
        ("reused_event_id", 6, False, "2026-11-01", "08"),
        ("reused_event_id", 7, False, "2026-11-01", "08"),
        ("duplicate_key", 8, False, "2026-11-01", "08"),
        ("duplicate_key", 9, False, "2026-11-01", "08"),
        ("duplicate_key", 10, False, "2026-11-01", "08"),
    ]
    assert {k: counts[k] for k in ("count_in", "count_new", "count_duplicates",
                                   "count_quarantined", "count_reused", "count_unreadable")} == {
        "count_in": 11, "count_new": 3, "count_duplicates": 2, "count_quarantined": 6,
        "count_reused": 3, "count_unreadable": 1}
    new = duckdb.sql(f"SELECT event_id FROM read_parquet('{tmp_path}/out/events/*/*/*.parquet')"
                     ).fetchall()
    # new events, merged with the existing rows of the one hour they touch
    assert sorted(r[0] for r in new) == ["kept-06", "n1", "ok-1", "ok-2"]


@pytest.mark.parametrize("horizon", [168, 0])
def test_an_id_reused_in_another_hour_by_a_later_run_is_quarantined_and_counted(
    tmp_path: Path, horizon: int,
) -> None:
    """Within the horizon (two days later here) a later run finds the id; with a horizon of
    0 only the partitions a run rewrites are checked, as before the horizon existed."""
    lake_dir = tmp_path / "lake"
    raw_file(lake_dir, "a", [line("id-1", "06:10"), line("id-2", "06:20")])
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "data"), "lake.url": str(lake_dir),
        "etl.engine.duckdb.memory_limit": "1GB", "etl.dedup_horizon_hours": horizon})
    runner = EtlRunner(settings)
    try:
        runner.run_once()
        raw_file(lake_dir, "c", [line("id-1", "06:10").replace("11-01", "11-03"),
                                 line("id-3", "06:10").replace("11-01", "11-03")])
        second = runner.run_once()
    finally:
        runner.close()
    reused = 1 if horizon else 0
    assert (second.rows_out, second.reused, second.quarantined) == (2 - reused, reused, reused)
    ledger = EtlLedger(open_state(settings.state_url))
    assert ledger.count_totals("events")["reused"] == reused
    found = duckdb.sql(f"SELECT reason, line FROM read_parquet('{lake_dir}/md-quarantine/*/*/*"
                       f".parquet')").fetchall() if reused else []
    assert [(r, '"id-1"' in text) for r, text in found] == [("reused_event_id", True)] * reused
