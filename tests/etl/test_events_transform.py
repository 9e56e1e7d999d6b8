"""The events plan on hand-written lines: flattening, timestamps, `extra`, quarantine."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from mad.etl.engines import Engine
from mad.etl.transforms.events import events_plan

HOUR_DIR = "md-raw-logs/service=gateway/year=2026/month=11/day=01/hour=06"
BASE: dict[str, Any] = {"event_type": "gateway.request.completed", "kind": "log",
                        "service": "gateway"}


def run_lines(engine: Engine, tmp_path: Path, lines: list[str]) -> tuple[dict[str, int], Path]:
    raw = tmp_path / "lake" / HOUR_DIR / ("part-" + "a" * 32 + ".jsonl")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    counts = engine.execute(events_plan(), [str(raw)], {"existing": []}, str(out))
    return counts, out


def rows(out: Path, name: str) -> list[dict[str, Any]]:
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{out}/{name}/*/*/*.parquet', "
                     "hive_partitioning = true, hive_types_autocast = false)")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def test_flatten_nested_event(engine: Engine, tmp_path: Path) -> None:
    event = {
        **BASE, "event_id": "e1", "timestamp": "2026-11-01T06:30:00.250+05:30",
        "level": "INFO", "host": "gateway-2", "message": "request served",
        "trace": {"trace_id": "t1", "span_id": "s1"},
        "context": {"user_id": "u-1", "request_id": "req-1", "session_id": "s-1",
                    "client_ip": "10.0.0.1", "geo": {"country": "DE", "city": "Berlin"},
                    "status_code": 201, "route": "/v1/cards"},
        "metrics": {"latency_ms": 12.5, "response_bytes": 2048},
        "error": {"code": "E1", "type": "T", "message": "boom"},
        "k8s": {"pod": "pod-1"}, "sampled": True,
    }
    counts, out = run_lines(engine, tmp_path, [json.dumps(event)])
    assert counts["events"] == 1 and counts["count_quarantined"] == 0
    (row,) = rows(out, "events")
    assert row["event_time"] == datetime(2026, 11, 1, 1, 0, 0, 250000)
    assert (row["date"], row["hour"]) == ("2026-11-01", "01")
    assert row["ingest_hour"] == datetime(2026, 11, 1, 6)
    expect = {"service": "gateway", "level": "INFO", "host": "gateway-2", "trace_id": "t1",
              "span_id": "s1", "user_id": "u-1", "request_id": "req-1", "session_id": "s-1",
              "client_ip": "10.0.0.1", "country": "DE", "city": "Berlin", "status_code": 201,
              "error_code": "E1", "error_type": "T", "error_message": "boom",
              "latency_ms": 12.5, "response_bytes": 2048.0, "cpu_pct": None}
    assert {k: row[k] for k in expect} == expect
    assert json.loads(row["extra"]) == {"context": {"route": "/v1/cards"},
                                        "k8s": {"pod": "pod-1"}, "sampled": True}


def test_timestamp_forms_and_service_fill(engine: Engine, tmp_path: Path) -> None:
    forms = {
        "z": "2026-11-01T05:59:59Z", "plus": "2026-11-01T11:29:59+05:30",
        "minus": "2026-11-01T00:59:59.5-05:00", "naive": "2026-11-01T05:59:59",
        "sec": 1793512799, "sec_frac": 1793512799.5, "ms": 1793512799500,
    }
    lines = [json.dumps({"event_id": k, "timestamp": v, "event_type": "auth.token.issued",
                         "kind": "log"}) for k, v in forms.items()]
    counts, out = run_lines(engine, tmp_path, lines)
    assert counts["count_quarantined"] == 0
    got = {r["event_id"]: r for r in rows(out, "events")}
    whole, half = datetime(2026, 11, 1, 5, 59, 59), datetime(2026, 11, 1, 5, 59, 59, 500000)
    assert {k: r["event_time"] for k, r in got.items()} == {
        "z": whole, "plus": whole, "minus": half, "naive": whole, "sec": whole,
        "sec_frac": half, "ms": half}
    assert {r["service"] for r in got.values()} == {"auth"}
    assert all(r["extra"] is None for r in got.values())
    assert counts["count_late"] == 0  # 05:59:59 is within an hour of the 06:00 ingest hour


def test_quarantine_reasons(engine: Engine, tmp_path: Path) -> None:
    ok = {**BASE, "timestamp": "2026-11-01T06:00:00Z"}
    cases = {
        "invalid_json": '{"event_id": "x", "timest',
        "not_an_object": "[1, 2]",
        "missing_field": json.dumps({k: v for k, v in ok.items() if k != "kind"} | {
            "event_id": "m"}),
        "wrong_type": json.dumps({**ok, "event_id": 12345}),
        "unknown_event_type": json.dumps({**ok, "event_id": "u", "event_type": "no.such"}),
        "kind_mismatch": json.dumps({**ok, "event_id": "k", "kind": "metric"}),
        "unknown_service": json.dumps({**ok, "event_id": "s", "service": "fraud"}),
        "bad_timestamp": json.dumps({**ok, "event_id": "b", "timestamp": "31/02/2026 25:61"}),
    }
    extra_wrong = [json.dumps({**ok, "event_id": "w1", "timestamp": True}),
                   json.dumps({**ok, "event_id": "w2", "metrics": "n/a"}),
                   json.dumps({**ok, "event_id": "w3", "metrics": {"latency_ms": "slow"}}),
                   json.dumps({**ok, "event_id": "t1", "timestamp": 1e20})]
    shared = json.dumps({"event_id": "h", "timestamp": "2026-11-01T06:00:00Z",
                         "event_type": "host.cpu", "kind": "metric"})
    lines = [*cases.values(), *extra_wrong, shared, "", json.dumps({**ok, "event_id": "fine"})]
    counts, out = run_lines(engine, tmp_path, lines)
    got = {r["line_no"]: r for r in rows(out, "quarantine")}
    expected = [*cases, "wrong_type", "wrong_type", "wrong_type", "bad_timestamp",
                "missing_field"]
    assert {n: got[n]["reason"] for n in got} == {i + 1: r for i, r in enumerate(expected)}
    assert got[1]["line"] == cases["invalid_json"]
    assert all((r["date"], r["hour"]) == ("2026-11-01", "06") for r in got.values())
    assert counts["count_in"] == len(lines) - 1  # the blank line is skipped
    assert counts["count_new"] == 1 and counts["count_quarantined"] == len(expected)


def test_duplicates_in_input_keep_first(engine: Engine, tmp_path: Path) -> None:
    first = json.dumps({**BASE, "event_id": "d", "timestamp": "2026-11-01T06:00:00Z",
                        "message": "first"})
    again = json.dumps({**BASE, "event_id": "d", "timestamp": "2026-11-01T06:00:00Z",
                        "message": "second"})
    counts, out = run_lines(engine, tmp_path, [first, again, first])
    assert counts["count_duplicates"] == 2 and counts["events"] == 1
    assert [r["message"] for r in rows(out, "events")] == ["first"]


def test_extra_drops_only_emptied_members(engine: Engine, tmp_path: Path) -> None:
    """Emptied `trace` / `context` / `geo` / ... go wherever they sit in their object (an empty
    object under one of those names anywhere goes too); empty objects under other names stay."""
    ok = {**BASE, "timestamp": "2026-11-01T06:00:00Z"}
    shapes: dict[str, tuple[dict[str, Any], Any]] = {
        "first": ({"trace": {"trace_id": "t"}, **ok, "x": 1}, {"x": 1}),
        "last": ({**ok, "x": 1, "error": {"code": "E"}}, {"x": 1}),
        "geo_only": ({**ok, "context": {"geo": {"city": "Paris"}}}, None),
        "geo_first": ({**ok, "context": {"geo": {}, "route": "/a"}}, {"context": {"route": "/a"}}),
        "geo_last": ({**ok, "context": {"route": "/a", "geo": {"country": "FR"}}},
                     {"context": {"route": "/a"}}),
        "empty_kept": ({**ok, "labels": {}, "metrics": {"latency_ms": 1}}, {"labels": {}}),
        "nested_name": ({**ok, "k8s": {"trace": {}, "pod": "p"}}, {"k8s": {"pod": "p"}}),
    }
    lines = [json.dumps({**doc, "event_id": name}) for name, (doc, _) in shapes.items()]
    counts, out = run_lines(engine, tmp_path, lines)
    assert counts["count_quarantined"] == 0
    got = {r["event_id"]: r["extra"] for r in rows(out, "events")}
    assert {k: None if v is None else json.loads(v) for k, v in got.items()} == {
        name: want for name, (_, want) in shapes.items()}
