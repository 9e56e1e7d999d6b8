"""Operator actions on a real state database: feedback, snoozes and maintenance windows,
honoured by the real outbox and dispatcher posting to a real HTTP server on loopback."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.detect.test_alerts import Receiver, receiver  # noqa: F401 (the fixture)
from tests.detect.test_pipeline import make_settings, run, stored, synthetic_rows, write_aggregates
from tests.pg_server import postgres_fixture

from mad.cli import main
from mad.config import Settings, load_settings
from mad.detect import operator
from mad.detect.alerts import Dispatcher, WebhookSink
from mad.detect.codec import change_to_dict
from mad.detect.incidents import IncidentTracker
from mad.detect.model import Anomaly, IncidentChange
from mad.detect.operator import BadAction, StateSilencer
from mad.detect.outbox import Outbox
from mad.detect.status import render
from mad.query.detection import detect_status
from mad.state import DetectStore, OperatorStore, SentAlerts, open_state

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
LATENCY = "latency_ms"


def anomaly(minute: int, service: str, series: str = LATENCY,
            severity: str = "warning") -> Anomaly:
    return Anomaly(service, series, "avg", "1m", T0 + timedelta(minutes=minute), 0.9,
                   severity, 900.0, 100.0, 80.0, 120.0, ("holt",))  # type: ignore[arg-type]


pg = postgres_fixture()


@pytest.fixture
def settings(tmp_path: Path, state_url: str) -> Settings:
    """Settings on a fresh state database: SQLite, then PostgreSQL."""
    return load_settings(env={}, overrides={"data_dir": str(tmp_path), "state.url": state_url})


class Detection:
    """The state database, its outbox and a dispatcher posting to the test's server."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.engine = open_state(settings.state_url)
        self.db = DetectStore(self.engine)
        self.sent = SentAlerts(self.engine)
        self.url = url
        self.tracker = IncidentTracker(gap_s=900, resolve_after_s=1800)

    def observe(self, *anomalies: Anomaly) -> list[IncidentChange]:
        """Feed the tracker and commit its incidents and changes, as the pipeline does."""
        changes = self.tracker.observe(list(anomalies))
        self.db.commit("1m", [], {}, [c.incident for c in changes],
                       [(c.dedup_key, change_to_dict(c)) for c in changes])
        return changes

    def deliver(self, now: datetime | None = None) -> tuple[int, int]:
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        outbox = Outbox(self.db, Dispatcher([WebhookSink(self.url, retries=0)], self.sent),
                        StateSilencer(self.engine, clock))
        return outbox.deliver()

    def silenced(self) -> list[Any]:
        return list(OperatorStore(self.engine).silenced_alerts())


@pytest.fixture
def detection(settings: Settings, receiver: Receiver) -> Any:  # noqa: F811
    d = Detection(settings, receiver.url)
    yield d
    d.engine.dispose()


def posted(receiver: Receiver) -> list[str]:  # noqa: F811
    return [body["dedup_key"] for _, body in receiver.requests]


# -- silences honoured by the outbox ----------------------------------------------------


def test_no_alert_during_a_snooze_and_a_new_change_after_it_is_sent(
        settings: Settings, detection: Detection, receiver: Receiver) -> None:  # noqa: F811
    (opened,) = detection.observe(anomaly(0, "payments"))
    inc_id = opened.incident.id
    until = datetime.now(UTC) + timedelta(hours=2)
    sid = operator.snooze(settings, "incident", inc_id, until, reason="deploy", user="ana")
    assert detection.deliver() == (0, 0)  # nothing sent, nothing left waiting
    assert receiver.requests == []
    (row,) = detection.silenced()
    assert row["key"] == opened.dedup_key and row["change"] == "opened"
    assert "snoozed" in row["reason"] and f"silence {sid}" in row["reason"]
    assert "deploy" in row["reason"] and "ana" in row["reason"]
    assert operator.silenced_by(settings, {"id": inc_id, "services": ["payments"],
                                           "series": ["payments/latency_ms/avg"]})

    later = until + timedelta(minutes=1)  # the snooze is over
    (escalated,) = detection.observe(anomaly(2, "accounts", severity="critical"))
    assert escalated.change == "escalated"
    assert detection.deliver(now=later) == (1, 0)
    assert posted(receiver) == [escalated.dedup_key]  # the silenced one is never sent
    assert operator.silenced_count(settings) == 1
    detection.deliver(now=later)
    assert len(receiver.requests) == 1 and operator.silenced_count(settings) == 1


def test_a_change_held_during_a_snooze_stays_silenced_after_it(
        settings: Settings, detection: Detection, receiver: Receiver) -> None:  # noqa: F811
    """A change due while a silence was active is not sent when the silence ends, even if
    no sink could take it then (its own time lies in the window)."""
    store = OperatorStore(detection.engine)
    store.add_silence("maintenance", "payments", T0 - timedelta(hours=1),
                      T0 + timedelta(hours=1), "db upgrade", "ana")
    detection.observe(anomaly(5, "payments"))
    assert detection.deliver(now=T0 + timedelta(hours=3)) == (0, 0)
    assert receiver.requests == [] and "maintenance of payments" in detection.silenced()[0][
        "reason"]


def test_maintenance_silences_the_incidents_of_its_service_only(
        settings: Settings, detection: Detection, receiver: Receiver) -> None:  # noqa: F811
    now = datetime.now(UTC)
    operator.add_maintenance(settings, "payments", now - timedelta(minutes=5),
                             now + timedelta(hours=1), reason="db upgrade")
    operator.add_maintenance(settings, "auth", now + timedelta(hours=1),
                             now + timedelta(hours=2))  # not yet: does not silence
    (pay,) = detection.observe(anomaly(0, "gateway"), anomaly(0, "payments"))
    far = [anomaly(120, "auth")]  # two hours later: another incident
    (auth,) = detection.observe(*far)
    assert pay.incident.services == ["gateway", "payments"]
    engine = detection.engine
    outbox = Outbox(detection.db, Dispatcher([WebhookSink(detection.url, retries=0)],
                                             SentAlerts(engine)))  # the silencer it makes
    assert outbox.deliver() == (1, 0)
    assert posted(receiver) == [auth.dedup_key]
    assert [r["key"] for r in detection.silenced()] == [pay.dedup_key]
    why = operator.silenced_by(settings, DetectStore(engine).incidents(status="open")[-1])
    assert why is not None and why.startswith("maintenance of payments until")
    assert operator.silenced_by(settings, {"id": auth.incident.id, "services": ["auth"],
                                           "series": ["auth/latency_ms/avg"]}) is None
    reasons = operator.silenced_reasons(settings, DetectStore(engine).incidents())
    assert reasons[auth.incident.id] is None and reasons[pay.incident.id] == why


def test_an_incident_is_silenced_only_when_all_its_series_are_snoozed(
        settings: Settings, detection: Detection, receiver: Receiver) -> None:  # noqa: F811
    until = datetime.now(UTC) + timedelta(hours=1)
    operator.snooze(settings, "series", "payments/latency_ms", until)
    (first,) = detection.observe(anomaly(0, "payments"), anomaly(0, "payments", "error_rate"))
    assert detection.deliver() == (1, 0)  # error_rate is not snoozed
    operator.snooze(settings, "series", "payments/error_rate", until)
    (second,) = detection.observe(anomaly(60, "payments"),
                                  anomaly(60, "payments", "error_rate"))
    assert detection.deliver() == (0, 0)
    assert posted(receiver) == [first.dedup_key]
    (row,) = detection.silenced()
    assert row["key"] == second.dedup_key and "all its series snoozed" in row["reason"]


def test_removing_a_silence_lets_later_alerts_through(
        settings: Settings, detection: Detection, receiver: Receiver) -> None:  # noqa: F811
    sid = operator.snooze(settings, "series", "payments/latency_ms",
                          datetime.now(UTC) + timedelta(hours=1))
    assert [s["id"] for s in operator.silences(settings)] == [sid]
    operator.remove_silence(settings, sid)
    assert operator.silences(settings, include_expired=True) == []
    (opened,) = detection.observe(anomaly(0, "payments"))
    assert detection.deliver() == (1, 0) and posted(receiver) == [opened.dedup_key]
    with pytest.raises(BadAction, match="no silence"):
        operator.remove_silence(settings, sid)


def test_the_pipeline_records_anomalies_but_sends_nothing_in_maintenance(
        tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}",
                             **{"detect.alerts.webhook_url": receiver.url})
    write_aggregates(Path(settings.lake_url), synthetic_rows())
    now = datetime.now(UTC)
    for service in ("gateway", "payments"):
        operator.add_maintenance(settings, service, now - timedelta(minutes=1),
                                 now + timedelta(hours=1))
    summary = run(settings)
    assert summary.anomalies > 0 and summary.changes > 0
    assert summary.alerts == 0 and summary.pending == 0
    assert len(stored(settings)) == summary.anomalies  # recorded all the same
    assert receiver.requests == [] and not settings.alerts_path.exists()
    assert operator.silenced_count(settings) == summary.changes
    status = detect_status(settings)
    assert status["silenced_alerts"] == summary.changes
    assert f"{summary.changes} alerts silenced" in render(status)


# -- silences: what is refused ----------------------------------------------------------


def test_silence_inputs_are_checked(settings: Settings, detection: Detection) -> None:
    (opened,) = detection.observe(anomaly(0, "payments"))
    now = datetime.now(UTC)
    hour = now + timedelta(hours=1)
    bad: list[tuple[Any, str]] = [
        (lambda: operator.snooze(settings, "incident", "inc-nope", hour), "no incident"),
        (lambda: operator.snooze(settings, "series", "vault/latency_ms", hour),
         "unknown service"),
        (lambda: operator.snooze(settings, "series", "payments/nope", hour), "unknown series"),
        (lambda: operator.snooze(settings, "series", "payments", hour), "SERVICE/SERIES"),
        (lambda: operator.snooze(settings, "series", "a/b/c", hour), "SERVICE/SERIES"),
        (lambda: operator.snooze(settings, "incident", opened.incident.id,
                                 now - timedelta(minutes=1)), "must come after"),
        (lambda: operator.snooze(settings, "incident", opened.incident.id,
                                 now + timedelta(days=31)), "at most 30 days"),
        (lambda: operator.snooze(settings, "incident", opened.incident.id,
                                 datetime(2030, 1, 1)), "no timezone"),
        (lambda: operator.snooze(settings, "incident", opened.incident.id, hour,
                                 reason="x" * 501), "at most 500"),
        (lambda: operator.snooze(settings, "incident", opened.incident.id, hour, user=""),
         "user"),
        (lambda: operator.snooze(settings, "everything", "x", hour),  # type: ignore[arg-type]
         "incident or a series"),
        (lambda: operator.add_maintenance(settings, "payments", hour, now), "must come after"),
        (lambda: operator.add_maintenance(settings, "payments", now - timedelta(hours=2),
                                          now - timedelta(hours=1)), "passed already"),
        (lambda: operator.add_maintenance(settings, "payments'; drop table x; --", now, hour),
         "unknown service"),
        (lambda: operator.remove_silence(settings, 0), "bad silence id"),
    ]
    for call, message in bad:
        with pytest.raises(BadAction, match=message):
            call()
    assert operator.silences(settings, include_expired=True) == []


def test_silences_listed_active_to_come_and_over(settings: Settings) -> None:
    now = datetime.now(UTC)
    soon = operator.add_maintenance(settings, "auth", now + timedelta(hours=1),
                                    now + timedelta(hours=2))
    active = operator.add_maintenance(settings, "fraud", now - timedelta(minutes=1),
                                      now + timedelta(hours=1), reason="r", user="bo")
    store = OperatorStore(open_state(settings.state_url))
    over = store.add_silence("maintenance", "fraud", now - timedelta(hours=3),
                             now - timedelta(hours=2), "", "operator")
    store.engine.dispose()
    assert [s["id"] for s in operator.silences(settings)] == [active, soon]
    assert [s["id"] for s in operator.silences(settings, include_expired=True)] == [
        over, active, soon]
    (row,) = operator.silences(settings, active_at=now)
    assert row == {"id": active, "kind": "maintenance", "target": "fraud",
                   "start": row["start"], "end": row["end"], "reason": "r", "user": "bo",
                   "created_at": row["created_at"]}
    assert row["start"].tzinfo is not None and row["end"] > now


# -- feedback ---------------------------------------------------------------------------


def test_feedback_round_trips_and_the_latest_label_wins(
        settings: Settings, detection: Detection) -> None:
    (first,) = detection.observe(anomaly(0, "payments"))
    (second,) = detection.observe(anomaly(120, "auth"))
    a, b = first.incident.id, second.incident.id
    operator.give_feedback(settings, a, "up", note="real outage", user="ana")
    operator.give_feedback(settings, a, "down", note="it was a test")
    operator.give_feedback(settings, b, "up")
    got = operator.feedback(settings)
    assert set(got) == {a, b}
    assert {k: got[a][k] for k in ("verdict", "note", "user")} == {
        "verdict": "down", "note": "it was a test", "user": "operator"}
    assert got[a]["at"].tzinfo is not None
    assert list(operator.feedback(settings, [b])) == [b]
    assert operator.feedback(settings, []) == {}

    exported = operator.export_feedback(settings)
    assert [r["incident_id"] for r in exported] == sorted([a, b])
    rec = next(r for r in exported if r["incident_id"] == a)
    assert {k: rec[k] for k in ("verdict", "note", "user", "window", "origin", "services",
                                "series")} == {
        "verdict": "down", "note": "it was a test", "user": "operator", "window": "1m",
        "origin": "payments", "services": ["payments"],
        "series": ["payments/latency_ms/avg"]}
    assert rec["started"] == rec["last_seen"] == T0


def test_feedback_inputs_are_checked(settings: Settings, detection: Detection) -> None:
    (opened,) = detection.observe(anomaly(0, "payments"))
    inc = opened.incident.id
    with pytest.raises(BadAction, match="up or down"):
        operator.give_feedback(settings, inc, "maybe")  # type: ignore[arg-type]
    with pytest.raises(BadAction, match="no incident"):
        operator.give_feedback(settings, "inc-20990101T0000-nobody", "up")
    with pytest.raises(BadAction, match="at most 500"):
        operator.give_feedback(settings, inc, "up", note="n" * 501)
    assert operator.feedback(settings) == {}


# -- the CLI ----------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`mad ...` in this process; returns (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_feedback_and_silences(settings: Settings, detection: Detection,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MAD_STATE__URL", settings.state_url)
    (opened,) = detection.observe(anomaly(0, "payments"))
    inc = opened.incident.id
    capsys.readouterr()

    assert cli(capsys, "detect", "feedback", inc, "down", "--note", "noise")[0] == 0
    code, out, _ = cli(capsys, "detect", "feedback", "--export")
    (line,) = out.splitlines()
    assert code == 0 and orjson.loads(line)["verdict"] == "down"
    assert orjson.loads(line)["started"] == T0.isoformat()
    target = tmp_path / "labels.jsonl"
    assert cli(capsys, "detect", "feedback", "--export", str(target))[0] == 0
    assert target.read_text() == out

    code, out, _ = cli(capsys, "detect", "silence", "incident", inc, "--for", "2h",
                       "--reason", "known")
    assert code == 0 and out.startswith("silence 1: incident " + inc)
    code, out, _ = cli(capsys, "detect", "silence", "series", "payments/latency_ms",
                       "--until", (datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert code == 0 and "series payments/latency_ms" in out
    start = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    code, out, _ = cli(capsys, "detect", "silence", "maintenance", "payments", "--from",
                       start.isoformat(), "--to", (start + timedelta(hours=2)).isoformat())
    assert code == 0 and f"from {start:%Y-%m-%d %H:%M}" in out
    code, out, _ = cli(capsys, "detect", "silence", "list")
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = cli(capsys, "detect", "silence", "list", "--format", "json")
    assert [s["kind"] for s in orjson.loads(out)] == ["incident", "series", "maintenance"]
    assert cli(capsys, "detect", "silence", "remove", "2")[0] == 0
    assert len(cli(capsys, "detect", "silence", "list", "--all")[1].splitlines()) == 2

    for args, needle in [
        (("detect", "feedback", inc, "sideways"), "up or down"),
        (("detect", "feedback", "inc-none", "up"), "no incident"),
        (("detect", "feedback", inc), "INCIDENT_ID and up|down"),
        (("detect", "silence", "incident", inc), "--for"),
        (("detect", "silence", "incident", inc, "--for", "2h", "--until", "x"), "one of"),
        (("detect", "silence", "incident", inc, "--for", "2 weeks"), "bad duration"),
        (("detect", "silence", "incident", inc, "--for", "31d"), "at most 30 days"),
        (("detect", "silence", "incident", inc, "--until", "2030-01-01T00:00"), "no offset"),
        (("detect", "silence", "incident", inc, "--until", "tomorrow"), "bad time"),
        (("detect", "silence", "series", "payments/nope", "--for", "1h"), "unknown series"),
        (("detect", "silence", "maintenance", "vault", "--from", start.isoformat(), "--to",
          (start + timedelta(hours=1)).isoformat()), "unknown service"),
        (("detect", "silence", "remove", "99"), "no silence 99"),
        (("detect", "silence", "list", "--format", "xml"), "unknown format"),
    ]:
        code, _, err = cli(capsys, *args)
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and needle in err and "Traceback" not in err, (args, err)


def test_cli_errors_are_one_line_in_a_real_process(settings: Settings,
                                                   detection: Detection) -> None:
    env = {"MAD_DATA_DIR": str(settings.data_dir), "MAD_STATE__URL": settings.state_url,
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "mad.cli", "detect", "silence",
                           "maintenance", "payments", "--from", "2026-12-02T10:00:00+00:00",
                           "--to", "2026-12-01T10:00:00+00:00"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "must come after the start" in proc.stderr and "Traceback" not in proc.stderr
