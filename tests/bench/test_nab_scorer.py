"""The NAB scorer against values computed by hand on a crafted series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mad.bench import nab

N = 100
START = np.datetime64("2024-01-01T00:00:00", "s")
STAMPS = START + np.arange(N) * np.timedelta64(60, "s")
# One window over rows 40..49 (width 10). Probation: min(floor(0.15 * 100), 750) = 15 rows.
WINDOWS = {"cat/a.csv": [(STAMPS[40], STAMPS[49])]}
STANDARD, LOW_FP, LOW_FN = nab.PROFILES


def score(scores: np.ndarray) -> list[nab.ProfileResult]:
    return nab.score_corpus({"cat/a.csv": (STAMPS, scores)}, WINDOWS)


def test_probation_length() -> None:
    assert nab.probation_length(100) == 15
    assert nab.probation_length(22695) == 750
    assert nab.probation_length(3) == 0


def test_scaled_sigmoid_values() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(3.0) == -1.0


def test_detector_firing_on_window_starts_scores_100() -> None:
    s = np.zeros(N)
    s[40] = 1.0
    for r in score(s):
        assert r.score == pytest.approx(100.0)


def test_detector_that_never_fires_scores_0() -> None:
    for r in score(np.zeros(N)):
        assert r.score == 0.0
        assert r.raw == r.null


def test_fixed_scores_match_hand_arithmetic() -> None:
    s = np.zeros(N)
    s[5] = 0.95  # in probation: ignored
    s[20] = 0.7  # before any window: FP at full cost, -0.11
    s[45] = 0.9  # in window: x = -(49 - 45 + 1) / 10 = -0.5
    s[70] = 0.8  # after the window: d = |49 - 70| / (10 - 1) = 21 / 9
    tp = (2 / (1 + math.exp(-2.5)) - 1) / (2 / (1 + math.exp(-5)) - 1)  # 0.84828 / 0.98661
    fp70 = (2 / (1 + math.exp(5 * 21 / 9)) - 1) * 0.11  # about -0.109998
    assert tp == pytest.approx(0.85979, abs=1e-5)
    # thresholds 0.9 -> tp; 0.8 -> tp + fp70; 0.7 -> tp + fp70 - 0.11: the best is 0.9.
    std, _, low_fn = score(s)
    assert std.threshold == 0.9
    assert std.raw == pytest.approx(tp)
    assert std.score == pytest.approx(100 * (tp + 1) / 2)  # 92.99
    assert low_fn.score == pytest.approx(100 * (tp + 2) / 3)  # null -2, perfect 1
    thresholds, totals = nab.threshold_curve(
        [nab.sweep(STAMPS, s, WINDOWS["cat/a.csv"], STANDARD)], STANDARD
    )
    assert list(thresholds[1:]) == [0.9, 0.8, 0.7, 0.0]  # row 5 (probation) is not a candidate
    assert totals[2] == pytest.approx(tp + fp70)
    assert totals[3] == pytest.approx(tp + fp70 - 0.11)


def test_fp_right_after_a_window_costs_little() -> None:
    s = np.zeros(N)
    s[40] = 1.0
    s[50] = 1.0  # d = 1 / 9: cost 0.11 * S(1/9)
    (std, *_) = score(s)
    expected = 1.0 + 0.11 * (2 / (1 + math.exp(5 / 9)) - 1)
    assert std.raw == pytest.approx(expected)


def test_only_earliest_detection_in_window_counts() -> None:
    s = np.zeros(N)
    s[42] = s[48] = 1.0
    (std, *_) = score(s)
    early = nab.scaled_sigmoid(-8 / 10) / nab.scaled_sigmoid(-1.0)
    assert std.raw == pytest.approx(early)


def brute_force(scores: np.ndarray, profile: nab.Profile) -> float:
    """Best raw total by trying every threshold directly (independent of the sweep code)."""
    best = -profile.fn_weight
    for th in sorted(set(scores[15:].tolist())):
        det = [i for i in range(15, N) if scores[i] >= th]
        inside = [i for i in det if 40 <= i <= 49]
        total = -profile.fn_weight
        if inside:
            x = -(49 - min(inside) + 1) / 10
            total = nab.scaled_sigmoid(x) / nab.scaled_sigmoid(-1.0) * profile.tp_weight
        for i in det:
            if i < 40:
                total -= profile.fp_weight
            elif i > 49:
                total += profile.fp_weight * nab.scaled_sigmoid(abs(49 - i) / 9)
        best = max(best, total)
    return best


def test_seeded_random_scores_match_brute_force() -> None:
    s = np.random.default_rng(3).random(N)
    for result, profile in zip(score(s), nab.PROFILES, strict=True):
        assert result.raw == pytest.approx(brute_force(s, profile))
