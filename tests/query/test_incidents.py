"""Incidents and one incident's detail against the state database (sqlite3) and the lake
(DuckDB); feedback and silences through the operator module when it is there."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mad.errors import ConfigError
from mad.query.access import QueryError
from mad.query.incidents import AROUND, BAND_MADS, incident_detail, incidents
from tests.query.conftest import BuiltLake, copy_lake, duck, lake_settings


def sql(db: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def test_incidents_are_the_stored_ones_with_their_alerts(pipeline_lake: BuiltLake) -> None:
    got = incidents(pipeline_lake.settings)
    stored = sql(pipeline_lake.state_db, "SELECT id, status, origin, anomalies, services "
                                         "FROM detect_incidents ORDER BY started DESC, id")
    assert [(i["id"], i["status"], i["origin"], i["anomalies"], i["services"])
            for i in got] == [(a, b, c, d, json.loads(e)) for a, b, c, d, e in stored]
    assert got, "the backfill's incidents were detected"
    for inc in got:
        [(sent,)] = sql(pipeline_lake.state_db, "SELECT count(*) FROM detect_alerts_sent "
                        "WHERE key LIKE ?", f"%:{inc['id']}:%")
        assert inc["alerts_sent"] == sent
        assert inc["started"].tzinfo is UTC and "feedback" in inc and "silenced" in inc
    assert sum(i["alerts_sent"] for i in got) > 0
    first = got[-1]
    assert incidents(pipeline_lake.settings, end=first["started"]) == []
    assert [i["id"] for i in incidents(pipeline_lake.settings, start=first["last_seen"],
                                       end=first["last_seen"] + timedelta(minutes=1))] == [
        i["id"] for i in got if i["started"] <= first["last_seen"] <= i["last_seen"]]
    assert all(i["status"] == "open" for i in incidents(pipeline_lake.settings,
                                                        status="open"))
    for bad in ({"status": "closed"}, {"limit": 0}):
        with pytest.raises(QueryError):
            incidents(pipeline_lake.settings, **bad)


def test_an_incident_in_full(pipeline_lake: BuiltLake) -> None:
    inc = incidents(pipeline_lake.settings)[0]
    got = incident_detail(pipeline_lake.settings, inc["id"])
    assert got["errors"] == [] and got["incident"]["id"] == inc["id"]
    lake = pipeline_lake.lake
    want = duck(f"""
        SELECT window_start, service, series, stat, observed FROM read_parquet(
            '{lake}/md-anomalies/*/part-{inc['window']}.parquet')
        WHERE window_start BETWEEN ? AND ? AND list_contains(?, service || '/' || series
              || '/' || stat) ORDER BY 1, 2, 3, 4""", [
        inc["started"].replace(tzinfo=None), inc["last_seen"].replace(tzinfo=None),
        inc["series"]])
    assert [(a["window_start"], a["service"], a["series"], a["stat"], a["observed"])
            for a in got["anomalies"]] == [(w.replace(tzinfo=UTC), *r) for w, *r in want]
    assert len(got["anomalies"]) == inc["anomalies"]
    assert got["series"] and [s["key"] for s in got["series"]] == inc["series"][
        :len(got["series"])]
    flagged = {(a["key"], a["window_start"]): a for a in got["anomalies"]}
    for s in got["series"][:3]:
        observed = dict(duck(f"""
            SELECT window_start, "{s['stat']}" FROM read_parquet(
                '{lake}/md-aggregates/window={inc['window']}/*/*.parquet')
            WHERE service = ? AND series = ? AND window_start >= ? AND window_start <= ?""", [
            s["service"], s["series"], (inc["started"] - AROUND).replace(tzinfo=None),
            (inc["last_seen"] + AROUND).replace(tzinfo=None)]))
        points = s["points"]
        assert {p["window_start"].replace(tzinfo=None): p["observed"] for p in points} == \
            observed
        for p in points:
            a = flagged.get((s["key"], p["window_start"]))
            assert p["anomaly"] == (a is not None)
            if a is not None:
                assert p["band_source"] == "detector"
                assert (p["expected"], p["lower"], p["upper"]) == (
                    a["expected"], a["lower"], a["upper"])
            else:
                assert p["band_source"] == "rolling"
                if p["expected"] is not None:
                    assert p["upper"] - p["expected"] == pytest.approx(
                        p["expected"] - p["lower"])
                    assert p["upper"] >= p["expected"] and BAND_MADS == 3.0
    rolling = [p for s in got["series"] for p in s["points"] if p["band_source"] == "rolling"]
    assert any(p["expected"] is not None for p in rolling)


def test_a_bad_or_unknown_incident_id(pipeline_lake: BuiltLake) -> None:
    for bad in ("../x", "", "a" * 300, "x'; DROP TABLE detect_incidents; --"):
        with pytest.raises(QueryError, match="bad incident id"):
            incident_detail(pipeline_lake.settings, bad)
    with pytest.raises(QueryError, match="no incident"):
        incident_detail(pipeline_lake.settings, "inc-19990101T0000-nobody")


def test_feedback_and_silences_from_the_operator_actions(tmp_path: Path,
                                                         pipeline_lake: BuiltLake) -> None:
    operator = pytest.importorskip("mad.detect.operator")
    built = copy_lake(pipeline_lake, tmp_path / "copy")
    inc = incidents(built.settings)[0]
    assert inc["feedback"] is None and inc["silenced"] is None
    operator.give_feedback(built.settings, inc["id"], "down", note="a deploy")
    operator.snooze(built.settings, "incident", inc["id"],
                    datetime.now(UTC) + timedelta(hours=1), reason="known")
    again = incidents(built.settings)[0]
    assert again["feedback"]["verdict"] == "down" and again["feedback"]["note"] == "a deploy"
    assert again["silenced"] and "snoozed" in again["silenced"]
    assert incident_detail(built.settings, inc["id"])["incident"]["silenced"] == \
        again["silenced"]


def test_a_missing_state_database_is_one_error(tmp_path: Path) -> None:
    settings = lake_settings(tmp_path / "typo")
    with pytest.raises(ConfigError, match="no state database"):
        incidents(settings)
    with pytest.raises(ConfigError, match="no state database"):
        incident_detail(settings, "inc-20261101T0000-gateway")
    assert not (tmp_path / "typo").exists()
