"""`mad up` end to end, as an operator runs it: started in its own process group (live
simulator and first-start backfill on), events posted by the test land in the raw lake, the
transformed lake, the aggregates and the dashboard's query functions; a SIGTERM to the
process group stops everything, a restart goes on from there: every acknowledged event_id is
in the transformed lake, none twice, the backfill is not made again, counts go on, and no
process is left over."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mad.config import load_settings
from mad.generate.backfill import run_backfill
from mad.query.overview import overview
from mad.query.services import service_metrics
from tests.runtime.helpers import (
    Up,
    aggregate_count,
    mad_processes,
    post,
    raw_ids,
    transformed_ids,
    up_env,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = tmp_path_factory.mktemp("up_e2e")
    start = datetime.fromtimestamp(time.time() // 60 * 60 - 20 * 60, UTC)
    settings = load_settings(env={}, overrides={
        "generate.duration": "10m", "generate.rate": 20, "generate.seed": 31,
        "generate.start": start.isoformat()})
    run_backfill(settings.generate, out, progress=False)
    return (out / "events.jsonl").read_bytes().splitlines(keepends=True)


def _ids(data: Path) -> set[str]:
    found = transformed_ids(data / "lake")
    return found[1] if found is not None else set()


def shown(env: dict[str, str], rows_out: int) -> dict[str, int] | None:
    """What the dashboard's Overview and Services read through `mad.query`, once its ETL
    count has reached `rows_out` with every part reporting running; else None."""
    settings = load_settings(env=env)
    data = overview(settings)
    etl, parts = data["etl"], {c["name"]: c for c in data["components"]}
    raw = sum(d["records"] or 0 for d in data["raw"].values())
    if etl["rows_out"] < rows_out or raw < rows_out:
        return None
    assert not data["errors"], data["errors"]
    assert etl["runs_failed"] == 0 and data["ingest"]["accepted"] >= rows_out
    for name in ("simulator", "ingest API", "stream", "raw writer", "etl", "detection"):
        assert parts[name]["status"] == "running" and not parts[name]["stale"], parts[name]
    now = datetime.now(UTC)
    rows = service_metrics(settings, "1m", now - timedelta(hours=1), now + timedelta(minutes=1))
    assert {r["service"] for r in rows} >= {"gateway", "payments"}
    return {"rows_out": etl["rows_out"], "raw_records": raw}


def test_mad_up_runs_stops_and_restarts_without_loss(tmp_path: Path,
                                                     lines: list[bytes]) -> None:
    data = tmp_path / "data"
    env = up_env(data, MAD_SUPERVISOR__BACKFILL_HOURS="0.5",
                 MAD_SUPERVISOR__BACKFILL_RATE="2")
    args = ["--rate", "5", "--no-dashboard"]
    log = (tmp_path / "up.log").open("wb")
    half = len(lines) // 2
    up = Up(env, args, log)
    try:
        wait_for(lambda: up.health()[0] == 200, 120, "every part running")
        assert up.component("simulator")["status"] == "running"
        assert up.component("backfill")["last_exit"] == "finished"
        first = post(up.ingest_port, lines[:half])
        assert first
        wait_for(lambda: first <= raw_ids(data / "lake"), 60, "the raw lake")
        wait_for(lambda: first <= _ids(data), 120, "the transformed lake")
        wait_for(lambda: aggregate_count(data / "lake") > 0, 60, "the aggregates")
        before = len(_ids(data))
        aggregates = aggregate_count(data / "lake")
        seen = wait_for(lambda: shown(env, len(first)), 60, "the dashboard's query functions")
        assert up.sigterm_group() == 0
        assert not mad_processes(data)

        up = Up(env, args, log)
        wait_for(lambda: up.health()[0] == 200, 120, "every part running again")
        assert up.component("backfill")["detail"].startswith("made before")
        second = post(up.ingest_port, lines[half:])
        wait_for(lambda: (first | second) <= _ids(data), 120, "the second half")
        wait_for(lambda: aggregate_count(data / "lake") >= aggregates, 60, "the aggregates")
        assert len(_ids(data)) >= before + len(second - first)
        again = wait_for(lambda: shown(env, seen["rows_out"] + len(second - first)), 60,
                         "the query functions after the restart")
        assert again["raw_records"] > seen["raw_records"]  # counts go on, none restart at 0
        assert up.sigterm_group() == 0
    except BaseException:
        up.kill_all()
        raise
    finally:
        log.close()
    text = (tmp_path / "up.log").read_text()
    assert text.count("stopped: simulator, backfill, ingest API, raw writer, etl, detection") \
        == 2, text[-3000:]
    assert "mad up: every part is supervised" in text and "/health" in text
    assert "Traceback" not in text
    rows, ids = transformed_ids(data / "lake") or (0, set())
    assert rows == len(ids), "an event_id appears twice in the transformed lake"
    assert first | second <= ids
    assert not mad_processes(data)
