"""The Event contract check: every bad record gets a reason, never an exception."""

from __future__ import annotations

from typing import Any

import pytest

from mad.events import check, parse_timestamp

GOOD: dict[str, Any] = {
    "event_id": "e1", "timestamp": "2026-11-01T07:00:00.250+07:00", "service": "payments",
    "event_type": "payments.card.authorized", "kind": "log", "metrics": {"amount": 12.5},
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01T07:00:00.250+07:00", 1793491200.25),
        ("2026-11-01T00:00:00Z", 1793491200.0),
        ("2026-11-01T00:00:00", 1793491200.0),
        (1793491200, 1793491200.0),
        (1793491200.5, 1793491200.5),
        (1793491200500, 1793491200.5),
    ],
)
def test_timestamps_in_any_producer_format(value: Any, expected: float) -> None:
    assert parse_timestamp(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [True, None, "yesterday", "31/02/2026 25:61:00", float("nan"),
                                   -5, 10**20, [1], "2026-13-01T00:00:00Z"])
def test_bad_timestamps(value: Any) -> None:
    assert parse_timestamp(value) is None


def test_good_event_passes_and_service_may_be_omitted() -> None:
    assert check(GOOD) is None
    assert check({k: v for k, v in GOOD.items() if k != "service"}) is None
    assert check({**GOOD, "extra_field": {"kept": True}}) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_id": None}, "missing_field"),
        ({"event_id": 5}, "wrong_type"),
        ({"timestamp": True}, "wrong_type"),
        ({"timestamp": "soon"}, "bad_timestamp"),
        ({"event_type": "payments.teleport"}, "unknown_event_type"),
        ({"kind": "trace"}, "wrong_type"),
        ({"kind": "metric"}, "kind_mismatch"),
        ({"service": "fraud"}, "unknown_service"),
        ({"metrics": "n/a"}, "wrong_type"),
        ({"metrics": {"amount": "12"}}, "wrong_type"),
        ({"context": [1]}, "wrong_type"),
    ],
)
def test_bad_events_get_a_reason(change: dict[str, Any], reason: str) -> None:
    problem = check({**GOOD, **change})
    assert problem is not None and problem.reason == reason


def test_shared_type_needs_a_service() -> None:
    rec = {**GOOD, "event_type": "host.cpu", "kind": "metric"}
    del rec["service"]
    problem = check(rec)
    assert problem is not None and problem.reason == "missing_field"


@pytest.mark.parametrize("record", [[], "x", 3, None, {"a": 1}])
def test_non_events(record: Any) -> None:
    assert check(record) is not None
