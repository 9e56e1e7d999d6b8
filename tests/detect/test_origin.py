"""Origin from change onsets and the call graph: the scorer's onsets, the tracker's evidence,
ids on replay, the state round trip, and the evidence in the state database and the alert."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from mad.config import DetectSettings
from mad.detect.alerts import alert_body, summary
from mad.detect.codec import change_from_dict, change_to_dict
from mad.detect.incidents import IncidentTracker
from mad.detect.model import Anomaly, Evidence, IncidentChange
from mad.detect.origin import change_onset, choose_origin, held, origin_of, service_onsets
from mad.detect.series import SeriesScorer, WindowRow
from mad.state import DetectStore, open_state

T0 = datetime(2026, 11, 27, tzinfo=UTC)
START = 200  # minute the auth failure storm begins


def settings() -> DetectSettings:
    # a detector still warming up (a series seen for the first time), as in a fresh
    # deployment: only the threshold rules can fire, so the rule crossing order is all the
    # old rule had to go on
    return DetectSettings.model_validate(
        {"detector": {"backend": "ensemble", "ensemble": {"warmup": 1000}}})


def storm() -> dict[str, np.ndarray]:
    """Error rates per minute: auth's begins to climb at START, under the 5% rule for six
    minutes; the gateway's jumps three minutes later, well over it."""
    rng = np.random.default_rng(5)
    n = START + 60
    auth = 0.02 + rng.normal(0.0, 0.002, n)
    gateway = 0.02 + rng.normal(0.0, 0.002, n)
    auth[START:START + 8] = [0.028, 0.032, 0.036, 0.040, 0.044, 0.048, 0.2, 0.25]
    auth[START + 8:START + 40] = 0.3
    gateway[START + 3:START + 40] = 0.15
    return {"auth": auth, "gateway": gateway}


def scored() -> list[Anomaly]:
    """The anomalies the pipeline's scorers find in `storm()`."""
    found: list[Anomaly] = []
    for service, values in storm().items():
        scorer = SeriesScorer(settings(), service, "error_rate")
        for i, v in enumerate(values):
            found += scorer.process(WindowRow(service, "error_rate",
                                              T0 + timedelta(minutes=i), {"avg": float(v)}))
    return found


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def first(found: list[Anomaly], service: str) -> Anomaly:
    return min((a for a in found if a.service == service), key=lambda a: a.window_start)


def replay(found: list[Anomaly]) -> list[IncidentChange]:
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    out = []
    for minute in range(START + 120):
        out += tr.observe([a for a in found if a.window_start == at(minute)])
        out += tr.advance(at(minute + 1))
    return out


def test_the_scorer_dates_a_change_from_where_its_values_left_the_band() -> None:
    found = scored()
    auth, gateway = first(found, "auth"), first(found, "gateway")
    # the gateway's rule crosses three minutes before auth's...
    assert gateway.window_start == at(START + 5) and gateway.detectors == (
        "rule:error-rate-5pct",)
    assert auth.window_start == at(START + 8)
    # ...but auth's values left their band first
    assert auth.onset == at(START) and gateway.onset == at(START + 3)
    assert all(a.onset == auth.onset for a in found if a.service == "auth")
    # the same rule anomalies the pipeline writes: band collapsed onto the threshold
    assert (auth.expected, auth.lower, auth.upper, auth.score) == (0.05, 0.05, 0.05, 1.0)


def test_a_callee_whose_change_began_first_is_named_over_a_caller_that_crossed_first() -> None:
    changes = replay(scored())
    opened = changes[0]
    assert (opened.change, opened.incident.origin) == ("opened", "gateway")
    assert opened.incident.id == "inc-20261127T0325-gateway"  # all it knew then
    moved = next(c for c in changes if c.incident.origin == "auth")
    assert moved.change == "escalated" and moved.incident.id == opened.incident.id
    assert "(origin now auth)" in summary(moved)
    assert "origin auth (error_rate avg out of its band from 03:20 UTC)" in summary(moved)
    resolved = changes[-1]
    assert resolved.change == "resolved" and resolved.incident.origin == "auth"
    # the rule it replaces, the earliest first anomaly within one window, says gateway
    firsts = {"auth": at(START + 8), "gateway": at(START + 5)}
    assert choose_origin(firsts, 60, tolerance=1) == "gateway"


def test_evidence_lists_the_series_their_change_and_onsets() -> None:
    inc = replay(scored())[-1].incident
    assert [(e.key, e.onset, e.first, e.origin) for e in inc.evidence] == [
        ("auth/error_rate/avg", at(START), at(START + 8), True),
        ("gateway/error_rate/avg", at(START + 3), at(START + 5), False),
    ]
    auth, gateway = inc.evidence
    assert auth.detectors == ("rule:error-rate-5pct",) and held(auth)
    assert auth.windows == auth.longest == 32 and gateway.windows == gateway.longest == 35
    assert auth.expected == 0.05 and auth.observed == 0.3 and auth.severity == "critical"
    assert service_onsets(inc.evidence, 60) == {"auth": at(START), "gateway": at(START + 3)}
    assert origin_of(inc.evidence, 60) == ("auth", "auth/error_rate/avg")


def test_same_ids_changes_and_seq_on_replay_and_in_any_batch_order() -> None:
    found = scored()
    once = replay(found)
    again = replay(list(reversed(found)))
    assert [(c.dedup_key, c.incident.origin) for c in once] == [
        (c.dedup_key, c.incident.origin) for c in again]
    assert once == again
    # one batch for everything gives the same incident at the end
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    tr.observe(found)
    (inc,) = tr.open_incidents()
    assert (inc.id, inc.origin, inc.evidence) == (
        once[-1].incident.id, "auth", once[-1].incident.evidence)


def test_state_round_trip_continues_exactly() -> None:
    found = scored()
    whole = replay(found)
    for cut in (START + 4, START + 6, START + 9, START + 30):
        tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
        head = []
        for minute in range(cut):
            head += tr.observe([a for a in found if a.window_start == at(minute)])
            head += tr.advance(at(minute + 1))
        restored = IncidentTracker.from_state(json.loads(json.dumps(tr.state())))
        assert restored.open_incidents() == tr.open_incidents()
        tail = []
        for minute in range(cut, START + 120):
            tail += restored.observe([a for a in found if a.window_start == at(minute)])
            tail += restored.advance(at(minute + 1))
        assert head + tail == whole


def test_a_scorer_restored_mid_change_gives_the_same_onsets() -> None:
    values = storm()["auth"]
    rows = [WindowRow("auth", "error_rate", at(i), {"avg": float(v)})
            for i, v in enumerate(values)]
    whole = SeriesScorer(settings(), "auth", "error_rate")
    want = [a for r in rows for a in whole.process(r)]
    part = SeriesScorer(settings(), "auth", "error_rate")
    head = [a for r in rows[:START + 9] for a in part.process(r)]
    saved = json.loads(json.dumps(part.state()))
    again = SeriesScorer(settings(), "auth", "error_rate", saved)
    tail = [a for r in rows[START + 9:] for a in again.process(r)]
    assert head + tail == want and want


def test_a_one_window_blip_before_the_problem_does_not_name_it() -> None:
    def anomaly(minute: int, service: str, series: str, detectors: tuple[str, ...],
                severity: str = "warning") -> Anomaly:
        return Anomaly(service, series, "avg", "1m", at(minute), 0.7,
                       severity,  # type: ignore[arg-type]
                       5.4, 3.3, 1.7, 4.9, detectors, onset=at(minute))

    blip = anomaly(0, "auth", "queue_depth", ("seasonal",))
    slow = [anomaly(m, s, "latency_ms", ("rule:slo",), "critical")
            for m in (7, 8) for s in ("accounts", "payments", "gateway")]
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    changes = tr.observe([blip]) + tr.observe(slow[:3]) + tr.observe(slow[3:])
    assert changes[0].incident.id == "inc-20261127T0000-auth"
    (inc,) = tr.open_incidents()
    assert inc.origin == "accounts"  # the deepest of those whose change held
    # two blips of one series far apart are not a change that held
    again = [anomaly(9, "auth", "queue_depth", ("seasonal",))]
    tr.observe(again)
    (inc,) = tr.open_incidents()
    (queue,) = [e for e in inc.evidence if e.series == "queue_depth"]
    assert (queue.windows, queue.longest, held(queue)) == (2, 1, False)
    assert inc.origin == "accounts"


def test_the_old_tracker_state_and_outbox_payloads_still_load() -> None:
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    tr.observe([Anomaly("payments", "latency_ms", "avg", "1m", T0, 0.9, "warning", 900.0,
                        120.0, 80.0, 160.0, ("holt",))])
    old = tr.state()
    old["version"] = 1
    for raw in old["open"]:
        del raw["incident"]["evidence"]
    restored = IncidentTracker.from_state(old)
    (inc,) = restored.open_incidents()
    assert [(e.key, e.onset, e.windows) for e in inc.evidence] == [
        ("payments/latency_ms/avg", T0, 1)]
    change = replay(scored())[-1]
    payload = change_to_dict(change)
    assert change_from_dict(orjson.loads(orjson.dumps(payload))) == change
    del payload["incident"]["evidence"]
    assert change_from_dict(payload).incident.evidence == []


def test_evidence_is_stored_with_the_incident_and_sent_in_the_alert(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    con = sqlite3.connect(db)  # a database from before the evidence column
    con.execute("CREATE TABLE detect_incidents (id VARCHAR(128) PRIMARY KEY, window "
                "VARCHAR(8) NOT NULL, status VARCHAR(16) NOT NULL, started DATETIME NOT NULL, "
                "last_seen DATETIME NOT NULL, resolved DATETIME, origin VARCHAR(128) NOT NULL, "
                "severity VARCHAR(16) NOT NULL, anomalies INTEGER NOT NULL, peak_score FLOAT "
                "NOT NULL, services TEXT NOT NULL, series TEXT NOT NULL, updated_at DATETIME "
                "NOT NULL)")
    con.execute("INSERT INTO detect_incidents VALUES ('inc-old', '1m', 'resolved', "
                "'2026-11-01 00:00:00', '2026-11-01 00:05:00', '2026-11-01 01:00:00', "
                "'auth', 'warning', 3, 0.9, '[\"auth\"]', '[\"auth/error_rate/avg\"]', "
                "'2026-11-01 01:00:00')")
    con.commit()
    con.close()
    engine = open_state(f"sqlite:///{db}")
    try:
        store = DetectStore(engine)
        change = replay(scored())[-1]
        store.commit("1m", [], {}, [change.incident], [])
        rows = {r["id"]: r for r in store.incidents(10)}
    finally:
        engine.dispose()
    assert rows["inc-old"]["evidence"] == []
    stored = rows[change.incident.id]["evidence"]
    assert [Evidence.from_dict(e) for e in stored] == change.incident.evidence
    assert stored[0]["onset"] == at(START).isoformat() and stored[0]["origin"] is True
    body = orjson.loads(orjson.dumps(alert_body(change)))
    assert body["incident"]["evidence"] == stored


def test_change_onset_on_plain_values() -> None:
    quiet = [10.0, 10.2, 9.9, 10.1, 9.8, 10.0, 10.1, 9.9, 10.0, 10.2]
    times = [60.0 * i for i in range(len(quiet) + 3)]
    rising = [*quiet, 11.5, 12.5, 13.5]  # left the band three windows before
    assert change_onset(rising, times, 60.0 * 13, 20.0, 60.0) == 60.0 * 10
    # a value back inside the band stops the walk; so does the other side of the median
    assert change_onset([*quiet, 12.5, 10.0, 13.5], times, 780.0, 20.0, 60.0) == 720.0
    assert change_onset(rising, times, 780.0, 5.0, 60.0) == 780.0
    # too little history to tell a band: the anomaly's own window
    assert change_onset([10.0, 30.0], [0.0, 60.0], 120.0, 40.0, 60.0) == 120.0


def test_the_incident_view_and_read_api_detail_show_the_evidence(tmp_path: Path) -> None:
    from mad.config import load_settings
    from mad.dashboard.tabs.anomalies import evidence_rows
    from mad.query.incidents import incident_detail, incidents

    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path)})
    change = replay(scored())[-1]
    engine = open_state(settings.state_url)
    try:
        DetectStore(engine).commit("1m", [], {}, [change.incident], [])
    finally:
        engine.dispose()
    detail = incident_detail(settings, change.incident.id)  # what /v1/incidents/{id} sends
    evidence = detail["incident"]["evidence"]
    assert [(e["service"], e["series"], e["stat"], e["onset"], e["origin"]) for e in evidence] \
        == [("auth", "error_rate", "avg", at(START).isoformat(), True),
            ("gateway", "error_rate", "avg", at(START + 3).isoformat(), False)]
    assert "evidence" not in incidents(settings)[0]  # the list stays short
    rows = evidence_rows(evidence)
    assert rows[0]["origin"] == "✓" and rows[1]["origin"] == ""
    assert rows[0]["series"] == "error_rate avg" and rows[0]["windows"] == 32
    assert rows[0]["onset"] == "2026-11-27 03:20:00 UTC"
    assert rows[0]["first anomaly"] == "2026-11-27 03:28:00 UTC"
    assert rows[0]["change"] == "0.30 (rule threshold 0.05)"
    assert evidence_rows(None) == []
