"""The decision engine: weighted vote, hysteresis and cooldown."""

from __future__ import annotations

import pytest

from mad.detect.vote import Decider, combine
from mad.errors import ConfigError


def test_max_vote_uses_weights() -> None:
    assert combine({"a": 0.2, "b": 0.6}) == 0.6
    assert combine({"a": 0.2, "b": 0.6}, {"b": 0.5}) == pytest.approx(0.3)


def test_mean_vote_is_weighted_average() -> None:
    assert combine({"a": 1.0, "b": 0.0}, {"a": 3.0, "b": 1.0}, "mean") == pytest.approx(0.75)


def test_empty_vote_and_unknown_method() -> None:
    assert combine({}) == 0.0
    with pytest.raises(ConfigError, match="known: max, mean"):
        combine({"a": 1.0}, how="median")


def test_hysteresis_keeps_one_alert_open() -> None:
    d = Decider(threshold=0.5, clear=0.2)
    # rises, dips to 0.3 (still above clear: same alert), clears, rises again: two alerts
    assert d.run([0.1, 0.6, 0.3, 0.7, 0.1, 0.8]) == [False, True, False, False, False, True]


def test_cooldown_silences_after_an_alert_closes() -> None:
    d = Decider(threshold=0.5, clear=0.5, cooldown=2)
    assert d.run([0.9, 0.1, 0.9, 0.9, 0.9]) == [True, False, False, False, True]


def test_state_round_trip() -> None:
    d = Decider(threshold=0.5, clear=0.2, cooldown=3)
    d.run([0.9, 0.1])
    e = Decider.from_state(d.state())
    assert e.run([0.9] * 5) == d.run([0.9] * 5)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        Decider(threshold=0.3, clear=0.5)
    with pytest.raises(ConfigError):
        Decider(cooldown=-1)
