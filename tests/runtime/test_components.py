"""`runtime_components` and `runtime_backfill` on SQLite and PostgreSQL: upserts, when a
component's `started_at` moves, aware UTC times, staleness, bad reports refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mad.state import Components, open_state
from mad.state.components import Backfills, is_stale
from tests.pg_server import postgres_fixture

pg = postgres_fixture()


def test_report_upserts_and_all_reads_back(state_url: str) -> None:
    components = Components(open_state(state_url))
    components.report("etl", "starting", None, 0, None, None)
    components.report("etl", "running", 41, 0, None, None, "pass every 60 s")
    components.report("ingest API", "running", 7, 0, None, "http://127.0.0.1:8010")
    rows = {r["name"]: r for r in components.all()}
    assert set(rows) == {"etl", "ingest API"}
    etl = rows["etl"]
    assert (etl["status"], etl["pid"], etl["restarts"], etl["detail"]) == (
        "running", 41, 0, "pass every 60 s")
    assert set(etl) == {"name", "status", "pid", "restarts", "last_exit", "url", "detail",
                        "started_at", "updated_at"}
    assert etl["started_at"].tzinfo is not None and etl["updated_at"].tzinfo is not None
    assert abs(etl["updated_at"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert rows["ingest API"]["url"] == "http://127.0.0.1:8010"


def test_started_at_moves_with_a_new_process_only(state_url: str) -> None:
    components = Components(open_state(state_url))
    components.report("etl", "running", 41, 0, None, None)
    first = components.all()[0]
    components.report("etl", "running", 41, 0, None, None, "still the same")
    same = components.all()[0]
    assert same["started_at"] == first["started_at"]
    assert same["updated_at"] >= first["updated_at"]
    components.report("etl", "restarting", None, 1, "was killed by signal 9", None)
    components.report("etl", "running", 42, 1, "was killed by signal 9", None)
    again = components.all()[0]
    assert again["started_at"] > first["started_at"]
    assert (again["restarts"], again["last_exit"]) == (1, "was killed by signal 9")


def test_a_report_older_than_15_s_is_stale() -> None:
    row = {"updated_at": datetime.now(UTC)}
    assert not is_stale(row)
    assert is_stale(row, now=row["updated_at"] + timedelta(seconds=16))


def test_bad_reports_are_refused_before_sql(state_url: str) -> None:
    components = Components(open_state(state_url))
    with pytest.raises(ValueError, match="unknown status"):
        components.report("etl", "dead", None, 0, None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        components.report("x" * 65, "running", None, 0, None, None)
    assert components.all() == []


def test_a_backfill_marker_is_made_once_and_advances(state_url: str) -> None:
    marks = Backfills(open_state(state_url))
    start = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    end = start + timedelta(hours=3)
    assert marks.get("first-start") is None
    mark = marks.begin("first-start", start, end, 50.0, 7)
    assert (mark.start, mark.end, mark.chunks_done, mark.done) == (start, end, 0, False)
    again = marks.begin("first-start", start + timedelta(hours=1), end, 9.0, 1)
    assert again.start == start and again.rate == 50.0  # the first range holds
    marks.progress("first-start", 12, 3400)
    assert marks.get("first-start").chunks_done == 12  # type: ignore[union-attr]
    marks.finish("first-start", 9000, 8900, 3)
    done = marks.get("first-start")
    assert done is not None and done.done and done.finished_at is not None
    assert (done.lines, done.valid_events, done.incidents) == (9000, 8900, 3)
    marks.progress("first-start", 1, 1)  # a late progress call cannot undo it
    assert marks.get("first-start").lines == 9000  # type: ignore[union-attr]
