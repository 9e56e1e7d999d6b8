"""Backfill output: reproducible, complete, and honest about what it injected."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from mad.catalog import EVENT_TYPES, KINDS, SERVICES, default_service
from mad.cli import main
from mad.events import check, parse_timestamp

SHORT = ["--start", "2026-11-02T08:00:00Z", "--duration", "20m", "--rate", "40", "--no-progress"]


def run(*args: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", *args])
    assert exc.value.code == 0


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_lines(out: Path) -> list[bytes]:
    return (out / "events.jsonl").read_bytes().splitlines()


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        run(*SHORT, "--seed", seed, "--out", str(tmp_path / name))
    a, b, c = (tmp_path / n for n in "abc")
    assert digest(a / "events.jsonl") == digest(b / "events.jsonl")
    assert digest(a / "labels.json") == digest(b / "labels.json")
    assert digest(a / "events.jsonl") != digest(c / "events.jsonl")


def test_event_ids_are_not_reused_by_another_hour_or_a_live_start(tmp_path: Path) -> None:
    """Backfills of two hours with one seed, and two live starts, share no event_id (each
    id names one event; the ETL would drop the second one as a duplicate)."""
    import time as clock

    from mad.config import load_settings
    from mad.generate.live import LiveController, StartRequest

    run("--duration", "10m", "--rate", "20", "--start", "2026-11-01T00:00:00Z",
        "--out", str(tmp_path / "h0"))
    run("--duration", "10m", "--rate", "20", "--start", "2026-11-01T01:00:00Z",
        "--out", str(tmp_path / "h1"))

    def ids(lines: list[bytes]) -> set[str]:
        found = set()
        for line in lines:
            try:
                found.add(json.loads(line)["event_id"])
            except (ValueError, KeyError, TypeError):
                continue  # the malformed records the generator injects
        return found

    first, second = ids(read_lines(tmp_path / "h0")), ids(read_lines(tmp_path / "h1"))
    assert len(first) > 1000 and not first & second
    live: list[set[str]] = []
    for n in range(2):
        sink = tmp_path / f"live{n}" / "events.jsonl"
        sim = LiveController(load_settings(env={}, overrides={"simulate.sink": str(sink)}))
        sim.start(StartRequest(interval_seconds=0.2, logs_per_interval=40, duration_seconds=0))
        clock.sleep(1.3)
        sim.stop()
        live.append(ids(sink.read_bytes().splitlines()))
    assert live[0] and live[1] and not live[0] & live[1]


def test_gzip_output_is_reproducible_and_holds_the_same_lines(tmp_path: Path) -> None:
    run(*SHORT, "--out", str(tmp_path / "plain"))
    run(*SHORT, "--gzip", "--out", str(tmp_path / "gz1"))
    run(*SHORT, "--gzip", "--out", str(tmp_path / "gz2"))
    assert digest(tmp_path / "gz1/events.jsonl.gz") == digest(tmp_path / "gz2/events.jsonl.gz")
    unpacked = gzip.decompress((tmp_path / "gz1/events.jsonl.gz").read_bytes())
    assert unpacked == (tmp_path / "plain/events.jsonl").read_bytes()


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    run(*SHORT, "--out", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "labels.json"]


@pytest.fixture(scope="module")
def parsed(six_hours: Path) -> dict[str, Any]:
    """Each line of the 6-hour run decoded and checked against the Event contract."""
    valid: list[dict[str, Any]] = []
    problems: Counter[str] = Counter()
    for line in read_lines(six_hours):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems["truncated_json"] += 1
            continue
        problem = check(record)
        if problem is None:
            valid.append(record)
        else:
            problems[problem.reason] += 1
    labels = orjson.loads((six_hours / "labels.json").read_bytes())
    return {"valid": valid, "problems": problems, "labels": labels}


def test_six_hours_cover_every_type_service_and_kind(parsed: dict[str, Any]) -> None:
    valid = parsed["valid"]
    assert {e["event_type"] for e in valid} == {t.name for t in EVENT_TYPES}
    services = {e.get("service") or default_service(e["event_type"]) for e in valid}
    assert services == set(SERVICES)
    assert {e["kind"] for e in valid} == set(KINDS)
    kinds = Counter(e["kind"] for e in valid)
    assert min(kinds.values()) > 0.05 * len(valid)


def test_event_envelope_is_nested_with_mixed_timestamp_formats(parsed: dict[str, Any]) -> None:
    valid = parsed["valid"]
    ids = [e["event_id"] for e in valid]
    assert len(set(ids)) == len(ids) - parsed["labels"]["faults"]["duplicates"]
    formats = Counter(
        "epoch" if isinstance(e["timestamp"], int | float) else e["timestamp"][23:] for e in valid
    )
    assert formats["epoch"] > 0 and formats["Z"] > 0
    assert len([f for f in formats if f.startswith(("+", "-"))]) >= 2
    request = next(e for e in valid if e["event_type"] == "payments.card.authorized")
    assert {"trace", "context", "metrics"} <= set(request)
    assert {"user_id", "request_id", "client_ip", "geo"} <= set(request["context"])
    failed = next(e for e in valid if e["event_type"] == "payments.transfer.failed")
    assert failed["level"] == "ERROR" and set(failed["error"]) == {"code", "type", "message"}


def test_fault_counts_in_labels_match_the_output(parsed: dict[str, Any]) -> None:
    faults = parsed["labels"]["faults"]
    valid, problems = parsed["valid"], parsed["problems"]
    ids = Counter(e["event_id"] for e in valid)
    assert sum(n - 1 for n in ids.values()) == faults["duplicates"] > 0
    malformed = faults["malformed"]
    assert sum(problems.values()) == faults["malformed_total"] > 0
    assert problems["truncated_json"] == malformed["truncated_json"]
    assert problems["unknown_event_type"] == malformed["unknown_event_type"]
    assert problems["bad_timestamp"] == malformed["bad_timestamp"]
    assert problems["missing_field"] == malformed["missing_field"]
    assert problems["wrong_type"] == malformed["wrong_type"]
    # Late: more than the threshold behind the newest event time seen so far.
    newest, late = 0.0, 0
    for e in valid:
        t = parse_timestamp(e["timestamp"])
        assert t is not None
        if t < newest - faults["late_threshold_s"]:
            late += 1
        newest = max(newest, t)
    assert late == faults["late"] > 0
    extra = sum(1 for e in valid if {"deployment_ring", "x_agent", "k8s", "sampled"} & set(e))
    assert extra > 0.5 * faults["unknown_fields"]
    assert faults["clock_skew_events"] > 0 and faults["service_omitted"] > 0
    assert parsed["labels"]["lines"] == len(read_lines_count(parsed))


def read_lines_count(parsed: dict[str, Any]) -> list[int]:
    return [0] * (len(parsed["valid"]) + sum(parsed["problems"].values()))


def _value(e: dict[str, Any], series: str) -> float | None:
    if series == "error_rate":
        return 1.0 if e["level"] == "ERROR" else 0.0
    v = (e.get("metrics") or {}).get(series)
    return float(v) if v is not None else None


def test_every_incident_shows_in_its_affected_series(parsed: dict[str, Any]) -> None:
    from mad.catalog import BY_NAME

    incidents = parsed["labels"]["incidents"]
    assert len({i["scenario"] for i in incidents}) >= 6
    windows = [(parse_timestamp(i["start"]), parse_timestamp(i["end"])) for i in incidents]
    by_service: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for e in parsed["valid"]:
        svc = e.get("service") or default_service(e["event_type"])
        by_service[svc].append((parse_timestamp(e["timestamp"]) or 0.0, e))
    for inc, (start, end) in zip(incidents, windows, strict=True):
        assert start is not None and end is not None
        span = end - start
        for a in inc["affected"]:
            inside: list[float] = []
            before: list[float] = []
            minutes_in: set[int] = set()
            minutes_before: set[int] = set()
            for t, e in by_service[a["service"]]:
                if a["kind"] and e["kind"] != a["kind"]:
                    continue
                if a["series"] == "error_rate" and e["kind"] == "metric":
                    continue
                if a["stat"] == "count":
                    ok = a["series"] == "events" or BY_NAME[e["event_type"]].outcome == "alert"
                    v: float | None = 1.0 if ok else None
                else:
                    v = _value(e, a["series"])
                if v is None:
                    continue
                if start + 120 <= t < end - 60:
                    inside.append(v)
                    minutes_in.add(int(t // 60))
                elif start - span - 600 <= t < start - 120 and not any(
                    s - 120 <= t < e2 + 600 for s, e2 in windows if s != start  # type: ignore[operator]
                ):
                    before.append(v)
                    minutes_before.add(int(t // 60))
            assert inside and before, (inc["id"], a)
            if a["stat"] == "count":
                ratio = (len(inside) / len(minutes_in)) / (len(before) / len(minutes_before))
            else:
                ratio = (sum(inside) / len(inside)) / max(sum(before) / len(before), 1e-9)
            if a["direction"] == "up":
                assert ratio > 1.3, (inc["id"], inc["scenario"], a, ratio)
            else:
                assert ratio < 0.75, (inc["id"], inc["scenario"], a, ratio)
