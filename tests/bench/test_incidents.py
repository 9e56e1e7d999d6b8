"""Scoring detected incidents against labels, on crafted inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from mad.bench.incidents import (
    Detected,
    Label,
    matches,
    read_labels,
    render,
    score_incidents,
)
from mad.detect.model import Incident
from mad.errors import MadError

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def label(ident: str, scenario: str, start: float, end: float, *services: str) -> Label:
    return Label(ident, scenario, at(start), at(end), services)


def det(ident: str, start: float, end: float, *services: str) -> Detected:
    return Detected(ident, at(start), at(end), services)


LABELS = [
    label("inc-001", "database_slowdown", 0, 20, "accounts", "payments", "gateway"),
    label("inc-002", "queue_backlog", 60, 80, "notifications"),
    label("inc-003", "database_slowdown", 120, 140, "accounts", "payments", "gateway"),
    label("inc-004", "fraud_spike", 180, 200, "fraud", "payments"),
]


def test_matching_needs_time_overlap_with_slack_and_a_shared_service() -> None:
    lab = LABELS[0]
    assert matches(det("d", 2, 10, "payments"), lab)
    assert not matches(det("d", 2, 10, "auth"), lab)  # no shared service
    assert matches(det("d", 29, 31, "gateway"), lab)  # within 10 min after the end
    assert not matches(det("d", 31, 33, "gateway"), lab)
    assert not matches(det("d", 29, 31, "gateway"), lab, slack_s=0)
    assert matches(det("d", -30, 1, "accounts"), lab)  # started before, still running


def test_scores_per_type_and_total() -> None:
    detected = [
        det("a", 3, 25, "accounts", "payments"),   # inc-001, delay 3 min
        det("b", 18, 22, "gateway"),               # inc-001 again: split
        det("c", 64, 90, "notifications"),         # inc-002, delay 4 min
        det("d", 100, 102, "auth"),                # FP nearest inc-003 (db slowdown)
        det("e", 149, 152, "accounts"),            # 9 min after inc-003 ends: matches
        det("f", 185, 186, "auth"),                # overlaps inc-004, no shared service: FP
    ]
    rep = score_incidents(LABELS, detected)
    rows = {t.scenario: t for t in rep.types}
    db = rows["database_slowdown"]
    assert (db.labels, db.found, db.detections, db.correct, db.split) == (2, 2, 4, 3, 1)
    assert db.recall == 1.0 and db.precision == 0.75
    assert db.f1 == pytest.approx(2 * 0.75 / 1.75)
    assert db.delays_s == [180.0, 1740.0] and db.median_delay_s == 960.0
    fraud = rows["fraud_spike"]
    assert (fraud.found, fraud.detections, fraud.correct) == (0, 1, 0)
    assert fraud.recall == 0.0 and fraud.precision == 0.0 and fraud.f1 == 0.0
    assert rows["queue_backlog"].delays_s == [240.0]
    t = rep.total
    assert (t.labels, t.found, t.detections, t.correct) == (4, 3, 6, 4)
    assert rep.missed == ["inc-004"] and rep.false_positives == ["d", "f"]
    assert ("b", "inc-001") in rep.matches
    lines = render(rep)
    assert lines[0].split()[:3] == ["scenario", "labels", "found"]
    assert lines[-1].split()[:6] == ["total", "4", "3", "6", "1", "0"]


def test_one_detection_spanning_two_labels_finds_both() -> None:
    labels = [label("l1", "error_burst", 0, 20, "fraud", "payments"),
              label("l2", "fraud_spike", 35, 50, "fraud", "payments")]
    rep = score_incidents(labels, [det("m", 2, 45, "fraud")])
    rows = {t.scenario: t for t in rep.types}
    assert rep.total.found == 2 and rep.total.precision == 1.0 and rep.missed == []
    assert rows["error_burst"].delays_s == [120.0]
    assert rows["fraud_spike"].carried == 1 and rows["fraud_spike"].delays_s == []
    assert rows["error_burst"].detections == 1 and rows["fraud_spike"].detections == 0
    assert rep.matches == [("m", "l1"), ("m", "l2")]


def test_empty_inputs() -> None:
    rep = score_incidents([], [])
    assert rep.total.recall is None and rep.total.precision is None and rep.types == []
    rep = score_incidents([], [det("x", 0, 1, "auth")])
    assert [t.scenario for t in rep.types] == ["(none)"] and rep.total.precision == 0.0
    rep = score_incidents(LABELS, [])
    assert rep.total.recall == 0.0 and rep.total.precision is None
    assert "-" in render(rep)[-1]


def test_warm_up_is_not_scored() -> None:
    labels = [label("early", "memory_leak", -120, -100, "fraud"), *LABELS[:1]]
    detected = [det("x", -119, -110, "fraud"), det("y", -200, -190, "auth"),
                det("z", 1, 5, "accounts")]
    rep = score_incidents(labels, detected, scored_from=T0)
    assert rep.total.labels == 1 and rep.total.detections == 1 and rep.total.found == 1
    # still open when scoring starts: scored, and it finds the label as carried
    rep = score_incidents(labels, [det("w", -30, 10, "accounts")], scored_from=T0)
    assert rep.total.found == 1 and rep.total.carried == 1 and rep.total.precision == 1.0


def test_detected_from_incident_covers_its_last_window() -> None:
    inc = Incident("inc-x", "open", at(0), at(7), None, "accounts", ["accounts", "gateway"])
    d = Detected.from_incident(inc, "1m")
    assert d.start == at(0) and d.end == at(8) and d.services == ("accounts", "gateway")


def test_read_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_bytes(orjson.dumps({"incidents": [{
        "id": "inc-001", "scenario": "error_burst", "start": "2026-11-01T06:00:00Z",
        "end": "2026-11-01T06:20:00Z", "services": ["fraud", "payments"],
    }]}))
    (lab,) = read_labels(path)
    assert lab.start == T0 and lab.services == ("fraud", "payments")
    path.write_bytes(b'{"incidents": [{"id": 1}]}')
    with pytest.raises(MadError, match="not a mad generate labels file"):
        read_labels(path)
    with pytest.raises(MadError, match="cannot read labels"):
        read_labels(tmp_path / "missing.json")


def test_prepare_reuses_the_same_day_and_refuses_another(tmp_path: Path) -> None:
    from mad.bench.incidents import BenchOptions, prepare

    opts = BenchOptions(work=tmp_path, seed=3, hours=1.0, warmup_hours=0.5, rate=1.0)
    labels = prepare(opts)
    assert labels.is_file() and any((tmp_path / "lake").rglob("*.jsonl"))
    assert prepare(opts) == labels
    with pytest.raises(MadError, match="other options"):
        prepare(BenchOptions(work=tmp_path, seed=4, hours=1.0, warmup_hours=0.5, rate=1.0))


def _mad(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    return subprocess.run([sys.executable, "-m", "mad.cli", "bench", "incidents", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_help_and_one_line_errors(tmp_path: Path) -> None:
    assert "--warmup-hours" in _mad("--help").stdout
    bad = _mad("--work", str(tmp_path), "--hours", "5", "--warmup-hours", "6")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--hours must be larger than --warmup-hours" in bad.stderr
    (tmp_path / "bench-data.json").write_text('{"seed": 1, "hours": 48.0, "rate": 20.0}')
    other = _mad("--work", str(tmp_path))
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "other options" in other.stderr


def test_origin_share_counts_found_labels_naming_the_injected_origin() -> None:
    labels = [Label("l1", "database_slowdown", at(0), at(20), ("accounts", "gateway"), "accounts"),
              Label("l2", "auth_failure_storm", at(60), at(80), ("auth", "gateway"), "auth")]
    detected = [Detected("a", at(1), at(20), ("gateway", "accounts"), "accounts"),
                Detected("b", at(61), at(80), ("gateway", "auth"), "gateway")]
    rep = score_incidents(labels, detected)
    assert rep.total.origin_right == 1 and rep.total.origin_share == 0.5
    assert render(rep)[-1].split()[-1] == "0.50"
