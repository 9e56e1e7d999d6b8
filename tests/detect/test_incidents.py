"""Incident grouping: joins, origin, which changes alert, resolve, restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mad.detect.incidents import IncidentTracker, choose_origin
from mad.detect.model import Anomaly, IncidentChange

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def anomaly(minute: float, service: str = "accounts", series: str = "latency_ms",
            severity: str = "warning", score: float = 0.95,
            detectors: tuple[str, ...] = ("holt",)) -> Anomaly:
    return Anomaly(
        service=service, series=series, stat="avg", window="1m",
        window_start=T0 + timedelta(minutes=minute), score=score,
        severity=severity,  # type: ignore[arg-type]
        observed=900.0, expected=120.0, lower=80.0, upper=160.0, detectors=detectors,
    )


def tracker(confirm: int = 1) -> IncidentTracker:
    return IncidentTracker(gap_s=900, resolve_after_s=1800, confirm_windows=confirm)


def kinds(changes: list[IncidentChange]) -> list[tuple[str, str, int]]:
    return [(c.incident.id, c.change, c.seq) for c in changes]


def test_empty_input_changes_nothing() -> None:
    tr = tracker()
    assert tr.observe([]) == []
    assert tr.advance(T0) == []
    assert tr.open_incidents() == []


def test_overlapping_anomalies_across_services_form_one_incident() -> None:
    tr = tracker()
    changes = tr.observe([anomaly(0, "accounts"), anomaly(1, "payments"),
                          anomaly(2, "gateway", "error_rate")])
    assert [c.change for c in changes] == ["opened", "escalated", "escalated"]
    (inc,) = tr.open_incidents()
    assert inc.id == "inc-20261127T0300-accounts"
    assert inc.services == ["accounts", "payments", "gateway"]
    assert inc.series == ["accounts/latency_ms/avg", "payments/latency_ms/avg",
                          "gateway/error_rate/avg"]
    assert inc.anomalies == 3
    assert inc.started == T0 and inc.last_seen == T0 + timedelta(minutes=2)


def test_anomaly_beyond_the_gap_opens_a_new_incident() -> None:
    tr = tracker()
    tr.observe([anomaly(0)])
    changes = tr.observe([anomaly(16, "fraud")])  # 16 min > 15 min gap
    assert [c.change for c in changes] == ["opened"]
    assert len(tr.open_incidents()) == 2


def test_more_of_the_same_sends_nothing_and_severity_or_service_escalates() -> None:
    tr = tracker()
    assert [c.change for c in tr.observe([anomaly(0)])] == ["opened"]
    assert tr.observe([anomaly(1), anomaly(2, series="cpu_pct")]) == []
    up = tr.observe([anomaly(3, severity="critical")])
    assert kinds(up) == [("inc-20261127T0300-accounts", "escalated", 1)]
    assert up[0].incident.severity == "critical"
    assert up[0].anomaly is not None and up[0].anomaly.severity == "critical"
    assert tr.observe([anomaly(4, severity="critical")]) == []
    assert tr.observe([anomaly(5, severity="warning")]) == []  # severity never falls
    joined = tr.observe([anomaly(6, "payments")])
    assert kinds(joined) == [("inc-20261127T0300-accounts", "escalated", 2)]
    assert joined[0].anomaly is not None and joined[0].anomaly.service == "payments"


def test_one_change_per_incident_per_window() -> None:
    tr = tracker()
    changes = tr.observe([anomaly(0, "gateway"), anomaly(0, "payments"),
                          anomaly(0, "accounts", severity="critical")])
    assert [c.change for c in changes] == ["opened"]
    inc = changes[0].incident
    assert inc.origin == "accounts" and inc.severity == "critical"
    assert changes[0].anomaly is not None and changes[0].anomaly.service == "accounts"


def test_origin_is_earliest_service() -> None:
    tr = tracker()
    tr.observe([anomaly(0, "gateway"), anomaly(5, "accounts")])
    assert tr.open_incidents()[0].origin == "gateway"


def test_origin_prefers_upstream_dependency_within_one_window() -> None:
    tr = tracker()
    changes = tr.observe([anomaly(0, "gateway"), anomaly(1, "accounts")])
    assert [c.change for c in changes] == ["opened", "escalated"]
    assert changes[0].incident.origin == "gateway"
    assert changes[1].incident.origin == "accounts"
    # the id was sent with the opening alert, so it keeps the first origin
    assert changes[1].incident.id == "inc-20261127T0300-gateway"


def test_choose_origin_ranks_callees_over_callers() -> None:
    t = T0
    assert choose_origin({"gateway": t, "payments": t, "accounts": t}, 60) == "accounts"
    assert choose_origin({"gateway": t, "payments": t}, 60) == "payments"
    # unrelated services: the deeper one in the call graph, then the earlier
    assert choose_origin({"auth": t, "fraud": t + timedelta(seconds=30)}, 60) == "fraud"
    assert choose_origin({"fraud": t, "notifications": t}, 60) == "fraud"  # then by name
    # within the tolerance (two windows) a callee is named; later it is not, however deep
    assert choose_origin({"gateway": t, "accounts": t + timedelta(minutes=2)}, 60) == "accounts"
    assert choose_origin({"gateway": t, "accounts": t + timedelta(minutes=3)}, 60) == "gateway"


def test_out_of_order_batch_gives_the_same_changes() -> None:
    batch = [anomaly(0, "accounts"), anomaly(1, "payments", severity="critical"),
             anomaly(3, "gateway"), anomaly(40, "fraud")]
    forward = tracker().observe(batch)
    backward = tracker().observe(list(reversed(batch)))
    assert forward == backward
    assert [c.change for c in forward] == ["opened", "escalated", "escalated", "opened"]


def test_resolve_after_quiet_time() -> None:
    tr = tracker()
    tr.observe([anomaly(0), anomaly(10)])
    assert tr.advance(T0 + timedelta(minutes=40)) == []  # 30 min after last_seen: not older
    (res,) = tr.advance(T0 + timedelta(minutes=41))
    assert res.change == "resolved" and res.seq == 1 and res.anomaly is None
    assert res.incident.status == "resolved"
    assert res.incident.resolved == T0 + timedelta(minutes=41)
    assert res.dedup_key == "inc-20261127T0300-accounts:1:resolved"
    assert tr.open_incidents() == []
    assert tr.advance(T0 + timedelta(hours=5)) == []


def test_same_minute_and_origin_gets_a_suffix() -> None:
    tr = IncidentTracker(gap_s=60, resolve_after_s=60)
    tr.observe([anomaly(0)])
    tr.advance(T0 + timedelta(minutes=5))
    late = tr.observe([anomaly(0.5)])  # a late anomaly of the same minute, after resolve
    assert late[0].incident.id == "inc-20261127T0300-accounts-2"


def test_snapshots_do_not_change_afterwards() -> None:
    tr = tracker()
    (opened,) = tr.observe([anomaly(0)])
    tr.observe([anomaly(1, "gateway")])
    assert opened.incident.services == ["accounts"]
    assert opened.incident.anomalies == 1


def test_naive_times_are_taken_as_utc() -> None:
    tr = tracker()
    naive = anomaly(0)
    naive = Anomaly(**{**naive.__dict__, "window_start": naive.window_start.replace(tzinfo=None)})
    tr.observe([naive, anomaly(1, "payments")])
    (inc,) = tr.open_incidents()
    assert inc.started == T0 and inc.anomalies == 2


def _batches() -> list[list[Anomaly]]:
    return [
        [anomaly(0, "gateway"), anomaly(0.5, "accounts")],
        [anomaly(2, "payments"), anomaly(3, "accounts", severity="critical")],
        [anomaly(30, "fraud")],
        [anomaly(31, "notifications"), anomaly(70, "auth")],
        [anomaly(72, "auth", series="error_rate", severity="critical")],
    ]


def _run(tr: IncidentTracker, batches: list[list[Anomaly]], start: int) -> list[IncidentChange]:
    out = []
    for i, batch in enumerate(batches, start):
        out += tr.observe(batch)
        out += tr.advance(T0 + timedelta(minutes=20 * i + 5))
    return out


@pytest.mark.parametrize("confirm", [1, 2])
def test_state_round_trip_replays_identically(confirm: int) -> None:
    batches = _batches()
    whole = _run(tracker(confirm), batches, 0)
    assert {c.change for c in whole} == {"opened", "escalated", "resolved"}
    for cut in range(len(batches) + 1):
        first = tracker(confirm)
        head = _run(first, batches[:cut], 0)
        saved = json.loads(json.dumps(first.state()))
        restored = IncidentTracker.from_state(saved)
        assert restored.open_incidents() == first.open_incidents()
        tail = _run(restored, batches[cut:], cut)
        assert head + tail == whole


def test_one_window_blip_is_not_alerted_when_confirmation_is_asked() -> None:
    tr = tracker(confirm=2)
    assert tr.observe([anomaly(0, "gateway"), anomaly(0, "auth")]) == []
    assert tr.open_incidents() == []
    assert tr.advance(T0 + timedelta(hours=1)) == []  # dropped quietly: nothing was sent
    assert tr.state()["open"] == []


def test_second_window_confirms_and_opens_from_the_first() -> None:
    tr = tracker(confirm=2)
    assert tr.observe([anomaly(0, "gateway")]) == []
    (opened,) = tr.observe([anomaly(3, "accounts", severity="critical")])
    assert (opened.change, opened.seq) == ("opened", 0)
    inc = opened.incident
    # no change held yet: the critical one names it over the earlier one-window warning
    assert inc.id == "inc-20261127T0300-accounts" and inc.started == T0
    assert inc.services == ["gateway", "accounts"] and inc.anomalies == 2
    assert opened.anomaly is not None and opened.anomaly.service == "accounts"
    assert [c.change for c in tr.observe([anomaly(4, "payments")])] == ["escalated"]


def test_a_strong_score_confirms_at_once_a_weak_one_waits() -> None:
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800, confirm_windows=2,
                         confirm_score=0.8)
    assert tr.observe([anomaly(0, "gateway", score=0.65)]) == []
    assert tr.advance(T0 + timedelta(hours=1)) == []  # the weak blip went quiet: not sent
    (opened,) = tr.observe([anomaly(70, "accounts", score=0.85)])
    assert opened.change == "opened" and opened.incident.services == ["accounts"]
    again = IncidentTracker.from_state(tr.state())
    assert again.state() == tr.state() and again.confirm_score == 0.8


def test_rule_anomaly_confirms_at_once() -> None:
    tr = tracker(confirm=3)
    (opened,) = tr.observe([anomaly(0, detectors=("rule:error-rate-5pct",))])
    assert opened.change == "opened"
