"""Random Cut Forest (`rcf`): detection, the batch path, restarts, edge cases, parameters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tests.detect.test_detectors import roc_auc

from mad.detect.detectors import create, score_series
from mad.detect.detectors.base import score_loop
from mad.detect.detectors.registry import restore
from mad.errors import ConfigError

SMALL = {"trees": 10, "sample": 64}  # the restart tests try many cut points


def state_text(detector: object) -> str:
    return json.dumps(detector.state())  # type: ignore[attr-defined]


def test_beats_chance_and_ranks_spikes_and_shift_high(series: tuple) -> None:
    t, x, labels = series
    scores = score_series(create("rcf"), t, x)
    scored = np.arange(len(x)) >= 300
    assert roc_auc(scores[scored], labels[scored]) >= 0.9
    normal = np.quantile(scores[scored & ~labels], 0.95)
    for i in (900, 1300, 1700, 2100):  # spikes: the shingles ending on them
        assert scores[i] > normal
    assert scores[1900] > normal  # first point of the level shift
    assert scores[1900:1905].min() > normal


def test_sliding_window_sample_detects_too(series: tuple) -> None:
    t, x, labels = series
    scores = score_series(create("rcf", memory=0, shingle=4), t, x)
    scored = np.arange(len(x)) >= 300
    assert roc_auc(scores[scored], labels[scored]) >= 0.9


@pytest.mark.parametrize("params", [{}, {"shingle": 1}, {"shingle": 4, "memory": 0}, SMALL])
def test_score_many_equals_the_per_point_loop(series: tuple, params: dict) -> None:
    t, x, _ = series
    x = x.copy()
    x[[500, 501, 1200]] = [math.nan, math.inf, -math.inf]
    batch = create("rcf", **params)
    looped = create("rcf", **params)
    many = batch.score_many(x, t)  # type: ignore[attr-defined]
    loop = score_loop(looped, t, x)
    np.testing.assert_array_equal(many, loop)
    assert state_text(batch) == state_text(looped)


@pytest.mark.parametrize("params", [SMALL, {**SMALL, "memory": 0}, {}])
def test_restart_mid_series_scores_like_uninterrupted(series: tuple, params: dict) -> None:
    t, x, _ = series
    whole_detector = create("rcf", **params)
    whole = score_series(whole_detector, t, x)
    for cut in (1, 2, 63, 64, 65, 300, 1000, 1901, 2399):
        first = create("rcf", **params)
        head = score_series(first, t[:cut], x[:cut])
        resumed = restore(json.loads(json.dumps(first.state())))  # type: ignore[attr-defined]
        assert state_text(resumed) == state_text(first)
        tail = score_series(resumed, t[cut:], x[cut:])
        np.testing.assert_array_equal(np.concatenate([head, tail]), whole)
        assert state_text(resumed) == state_text(whole_detector)


def test_restart_point_by_point(series: tuple) -> None:
    """score_one then learn_one on a detector restored before every point of a stretch."""
    t, x, _ = series
    whole = score_series(create("rcf", **SMALL), t[:400], x[:400])
    detector = create("rcf", **SMALL)
    score_series(detector, t[:300], x[:300])
    for i in range(300, 400):
        detector = restore(json.loads(json.dumps(detector.state())))  # type: ignore[attr-defined]
        assert detector.score_one(float(x[i]), float(t[i])) == whole[i]
        detector.learn_one(float(x[i]), float(t[i]))


def test_score_one_changes_nothing(series: tuple) -> None:
    t, x, _ = series
    detector = create("rcf", **SMALL)
    score_series(detector, t[:500], x[:500])
    before = state_text(detector)
    first = detector.score_one(float(x[500]), float(t[500]))
    assert detector.score_one(float(x[500]), float(t[500])) == first
    detector.score_one(1e9, float(t[500]))
    assert state_text(detector) == before


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_score_zero_and_are_not_learnt(series: tuple, bad: float) -> None:
    t, x, _ = series
    detector = create("rcf", **SMALL)
    score_series(detector, t[:500], x[:500])
    before = state_text(detector)
    assert detector.score_one(bad, float(t[500])) == 0.0
    detector.learn_one(bad, float(t[500]))
    assert state_text(detector) == before
    scores = detector.score_many(np.array([bad, bad]), t[500:502])  # type: ignore[attr-defined]
    assert scores.tolist() == [0.0, 0.0]
    assert state_text(detector) == before


def test_constant_series_scores_zero(series: tuple) -> None:
    t, _, _ = series
    scores = score_series(create("rcf"), t[:1500], np.full(1500, 42.0))
    assert scores.tolist() == [0.0] * 1500


def test_three_points_score_zero() -> None:
    scores = score_series(create("rcf"), np.array([0.0, 60.0, 120.0]), np.array([1.0, 5.0, -3.0]))
    assert scores.tolist() == [0.0, 0.0, 0.0]


def test_warmup_parameter(series: tuple) -> None:
    t, x, _ = series
    scores = score_series(create("rcf", shingle=4, warmup=100), t[:400], x[:400])
    assert np.all(scores[:103] == 0.0)  # 3 values before the first shingle, then 100 shingles
    assert np.all(scores[103:] > 0.0)


def test_level_and_scale_do_not_matter(series: tuple) -> None:
    t, x, _ = series
    base = score_series(create("rcf", **SMALL), t, x)
    moved = score_series(create("rcf", **SMALL), t, 1e6 + 250.0 * x)
    small = score_series(create("rcf", **SMALL), t, 1e-3 * x)
    np.testing.assert_allclose(moved, base, rtol=0, atol=1e-9)
    np.testing.assert_allclose(small, base, rtol=0, atol=1e-9)


def test_repeated_values_share_leaves(series: tuple) -> None:
    """A series of a few distinct values (many equal shingles): both paths and restarts agree,
    and a new value stands out."""
    t, _, _ = series
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=1200).astype(float)
    x[1000] = 7.0
    whole = score_series(create("rcf", **SMALL), t[:1200], x)
    np.testing.assert_array_equal(whole, score_loop(create("rcf", **SMALL), t[:1200], x))
    first = create("rcf", **SMALL)
    head = score_series(first, t[:600], x[:600])
    resumed = restore(json.loads(json.dumps(first.state())))  # type: ignore[attr-defined]
    tail = score_series(resumed, t[600:1200], x[600:])
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)
    assert whole[1000] > np.quantile(whole[200:1000], 0.99)


def test_seed_changes_the_scores_but_not_their_quality(series: tuple) -> None:
    t, x, labels = series
    a = score_series(create("rcf", seed=1), t, x)
    b = score_series(create("rcf", seed=2), t, x)
    assert not np.array_equal(a, b)
    scored = np.arange(len(x)) >= 300
    assert roc_auc(b[scored], labels[scored]) >= 0.9


@pytest.mark.parametrize("params", [
    {"shingle": 0}, {"trees": 0}, {"sample": 1}, {"memory": -1}, {"warmup": 0},
    {"scale": 0.0}, {"scale": math.inf}, {"seed": -1}, {"shingle": "four"},
    {"no_such_parameter": 1},
])
def test_bad_parameters_are_config_errors(params: dict) -> None:
    with pytest.raises(ConfigError, match="rcf"):
        create("rcf", **params)
