"""Detection state (series, tracker, incidents, outbox, sent alerts) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from mad.detect.model import Incident
from mad.state import DetectStore, SentAlerts, SeriesState, open_state

T0 = datetime(2026, 11, 1, 0, 5, tzinfo=UTC)


@pytest.fixture
def engine(state_url: str) -> Iterator[Engine]:
    engine = open_state(state_url)
    yield engine
    engine.dispose()


def incident(status: str = "open", anomalies: int = 1) -> Incident:
    return Incident(id="inc-20261101T0005-payments", status=status,  # type: ignore[arg-type]
                    started=T0, last_seen=T0, resolved=T0 if status == "resolved" else None,
                    origin="payments", services=["payments"], series=["payments/tps/avg"],
                    anomalies=anomalies, peak_score=0.97, severity="critical")


def test_a_batch_round_trips_and_incidents_are_upserted(engine: Engine) -> None:
    db = DetectStore(engine)
    state = {"spec": {"detector": "ensemble"}, "values": [1.5, float("1e300")], "nested": {"a": 1}}
    db.commit("1m", [SeriesState("payments", "tps", T0, 5, state)], {"tracker:1m": {"open": []}},
              [incident()], [("k:0:opened", {"change": "opened"})])
    loaded = db.load_series("1m")
    assert list(loaded) == [("payments", "tps")]
    got = loaded[("payments", "tps")]
    assert got.watermark == T0 and got.watermark.tzinfo is not None
    assert got.state == state and got.points == 5
    assert db.load_series("5m") == {}
    assert db.load_meta("tracker:1m") == {"open": []}
    assert db.load_meta("tracker:5m") is None

    later = T0.replace(minute=9)
    db.commit("1m", [SeriesState("payments", "tps", later, 9, {"x": 2})], {},
              [incident("resolved", 4)], [])
    assert db.load_series("1m")[("payments", "tps")].watermark == later
    (row,) = db.incidents()
    assert (row["status"], row["anomalies"], row["services"]) == ("resolved", 4, ["payments"])
    assert db.incidents(status="open") == []
    assert [m["points"] for m in db.watermarks()] == [9]


def test_a_failed_commit_leaves_nothing(engine: Engine) -> None:
    db = DetectStore(engine)
    naive = datetime(2026, 11, 1)  # UtcDateTime refuses a time without an offset
    with pytest.raises(Exception, match="timezone"):
        db.commit("1m", [SeriesState("payments", "tps", T0, 1, {}),
                         SeriesState("auth", "tps", naive, 1, {})],
                  {"tracker:1m": {}}, [incident()], [("k:0:opened", {})])
    assert db.load_series("1m") == {}
    assert db.load_meta("tracker:1m") is None
    assert db.incidents() == [] and db.pending_alerts() == []


def test_outbox_and_sent_log(engine: Engine) -> None:
    db = DetectStore(engine)
    db.commit("1m", [], {}, [], [("a:0:opened", {"n": 1}), ("b:0:opened", {"n": 2})])
    assert [k for k, _ in db.pending_alerts()] == ["a:0:opened", "b:0:opened"]
    db.delivered(["a:0:opened", "missing"])
    assert db.pending_alerts() == [("b:0:opened", {"n": 2})]

    sent = SentAlerts(engine)
    assert not sent.seen("jsonl:b:0:opened")
    sent.mark("jsonl:b:0:opened")
    sent.mark("jsonl:b:0:opened")  # marking twice is harmless
    assert sent.seen("jsonl:b:0:opened")
    assert not sent.seen("webhook:b:0:opened")
    assert SentAlerts(engine).seen("jsonl:b:0:opened")  # a new process sees it too


def test_alerts_refused_for_good_are_done_and_listed(state_url: str) -> None:
    from mad.state import SentAlerts, open_state

    engine = open_state(state_url)
    sent = SentAlerts(engine)
    sent.mark("jsonl:a")
    sent.fail("webhook:a", "webhook rejected alert a with HTTP 422")
    sent.fail("webhook:a", "webhook rejected alert a with HTTP 410")  # recorded once
    assert sent.seen("jsonl:a") and sent.seen("webhook:a") and not sent.seen("webhook:b")
    total, rows = sent.failures()
    assert total == 1 and rows[0]["key"] == "webhook:a" and "410" in rows[0]["error"]
    engine.dispose()
