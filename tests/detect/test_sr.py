"""The Spectral Residual detectors (`sr`, `srcnn`): detection, the batch path, restarts and
edge cases."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from tests.detect.conftest import synthetic

from mad.detect.detectors import create, score_series
from mad.detect.detectors.base import score_loop
from mad.detect.detectors.registry import restore
from mad.detect.detectors.sr import CHUNK, SpectralResidual
from mad.detect.detectors.srcnn import WEIGHTS, SrCnn, model_from_json
from mad.errors import ConfigError

SPIKES = [900, 1300, 1700, 2100]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a labelled point outscores an unlabelled one (ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def sr(**params: object) -> SpectralResidual:
    made = create("sr", **params)
    assert isinstance(made, SpectralResidual)
    return made


def state_text(d: SpectralResidual) -> str:
    return json.dumps(d.state())


def test_beats_chance_and_scores_spikes_high(series: tuple) -> None:
    t, x, labels = series
    scores = sr().score_many(x, t)
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    scored = np.arange(len(x)) >= 300
    assert roc_auc(scores[scored], labels[scored]) >= 0.6
    normal = scores[scored & ~labels]
    assert np.all(scores[SPIKES] > np.quantile(normal, 0.99))
    assert np.median(normal) < 0.1


def test_a_spike_in_a_clean_cycle_stands_out() -> None:
    n = 600
    rng = np.random.default_rng(3)
    x = np.sin(2 * np.pi * np.arange(n) / 50.0) + rng.normal(0.0, 0.05, n)
    x[500] += 2.0
    scores = sr().score_many(x, np.arange(n) * 60.0)
    assert scores[500] > 0.5
    assert scores[500] > scores[300:500].max()


def test_the_papers_tail_hides_a_spike_in_the_newest_value(series: tuple) -> None:
    """The documented reason for the default: the gradient estimate continues a spike at about
    2.3 times its height, so the spike itself is no longer salient."""
    t, x, _ = series
    last = sr().score_many(x, t)
    gradient = sr(extrapolate="gradient").score_many(x, t)
    assert np.all(gradient[SPIKES] < last[SPIKES] / 2)


def test_scale_and_level_free(series: tuple) -> None:
    t, x, _ = series
    base = sr(window=64).score_many(x, t)
    for a, b in ((1e6, -3.0), (-0.001, 250.0), (7.0, 1e5), (1e-250, 0.0), (-1e250, 1e251)):
        other = sr(window=64).score_many(a * x + b, t)
        np.testing.assert_allclose(other, base, rtol=0.0, atol=1e-8)


@pytest.mark.parametrize("params", [{}, {"window": 32, "tail": 1}, {"warmup": 500},
                                    {"extrapolate": "gradient", "window": 64, "q": 4}])
def test_score_many_equals_the_loop(params: dict) -> None:
    t, x, _ = synthetic(n=CHUNK + 1500, seed=4)  # more windows than one FFT chunk
    x = x.copy()
    x[[50, 700, 701, 3000, 4500]] = [math.nan, math.inf, -math.inf, math.nan, math.nan]
    batch, loop = sr(**params), sr(**params)
    many = batch.score_many(x, t)
    one = score_loop(loop, t, x)
    np.testing.assert_array_equal(many, one)
    assert state_text(batch) == state_text(loop)
    assert np.count_nonzero(many) > len(x) // 10


def test_batches_of_any_size_equal_one_batch(series: tuple) -> None:
    t, x, _ = series
    whole = sr(window=64)
    expected = whole.score_many(x, t)
    split = sr(window=64)
    cuts = [0, 1, 2, 63, 64, 65, 300, 301, 1500, len(x)]
    parts = [split.score_many(x[a:b], t[a:b]) for a, b in itertools.pairwise(cuts)]
    np.testing.assert_array_equal(np.concatenate(parts), expected)
    assert state_text(split) == state_text(whole)


@pytest.mark.parametrize("cut", [3, 100, 255, 256, 257, 700, 1901, 2300])
def test_restart_through_json_equals_uninterrupted(series: tuple, cut: int) -> None:
    t, x, _ = series
    whole = score_series(sr(), t, x)
    first = sr()
    head = score_series(first, t[:cut], x[:cut])
    resumed = restore(json.loads(json.dumps(first.state())))
    assert isinstance(resumed, SpectralResidual)
    assert state_text(resumed) == state_text(first)
    tail = score_loop(resumed, t[cut:], x[cut:]) if cut % 2 else score_series(
        resumed, t[cut:], x[cut:])
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)


def test_nan_and_inf_score_zero_and_are_not_learnt(series: tuple) -> None:
    t, x, _ = series
    d = sr(window=64)
    d.score_many(x[:400], t[:400])
    before = state_text(d)
    for bad in (math.nan, math.inf, -math.inf):
        assert d.score_one(bad, 0.0) == 0.0
        d.learn_one(bad, 0.0)
        assert state_text(d) == before
    batch = d.score_many(np.array([math.nan, math.inf, -math.inf]), np.zeros(3))
    assert batch.tolist() == [0.0, 0.0, 0.0]
    assert state_text(d) == before


def test_constant_series_scores_zero() -> None:
    for level in (0.0, 42.0, -1e9, 1e-300):
        x = np.full(1000, level)
        t = np.arange(1000) * 60.0
        assert sr().score_many(x, t).max() == 0.0
        assert score_loop(sr(window=16, z=8), t, x).max() == 0.0


def test_a_step_out_of_a_constant_series_scores() -> None:
    x = np.full(400, 5.0)
    x[350] = 6.0
    scores = sr().score_many(x, np.arange(400) * 60.0)
    assert scores[:350].max() == 0.0
    assert scores[350] > 0.5


def test_three_points_and_warmup(series: tuple) -> None:
    assert sr().score_many(np.array([1.0, 5.0, -3.0]), np.zeros(3)).tolist() == [0.0] * 3
    d = sr(window=8, z=4)
    for x in (1.0, 5.0, -3.0):
        assert d.score_one(x, 0.0) == 0.0
        d.learn_one(x, 0.0)
    t, x = series[0][:600], series[1][:600]
    scores = sr(window=32, warmup=400).score_many(x, t)
    assert scores[:400].max() == 0.0 and scores[400:].max() > 0.0
    early = sr(window=32).score_many(x, t)
    assert early[:31].max() == 0.0 and early[31:400].max() > 0.0


@pytest.mark.parametrize("params", [
    {"window": 4}, {"tail": 0}, {"extrapolate": "spline"}, {"slope": 0},
    {"window": 16, "z": 8, "slope": 16}, {"q": 0}, {"z": 0}, {"window": 16, "z": 16},
    {"scale": 0.0}, {"scale": -1.0}, {"warmup": -1}, {"window": "wide"}, {"lag": 3},
])
def test_bad_parameters_are_config_errors(params: dict) -> None:
    with pytest.raises(ConfigError, match="sr"):
        create("sr", **params)


# SR-CNN: the same windows, scored by the small network trained by scripts/train_srcnn.py


def test_srcnn_weights_are_small_and_fit_the_network() -> None:
    assert WEIGHTS.stat().st_size < 50_000
    model = model_from_json(json.loads(WEIGHTS.read_text()))
    kernel = model.w1.shape[1]
    assert model.w2.shape[1:] == (model.w1.shape[0], kernel)
    assert model.w3.shape == (len(model.b3), model.length - 2 * (kernel - 1), len(model.b2))
    assert model.w4.shape == model.b3.shape


def test_srcnn_beats_chance_and_scores_spikes_high(series: tuple) -> None:
    t, x, labels = series
    scores = create("srcnn").score_many(x, t)  # type: ignore[attr-defined]
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    scored = np.arange(len(x)) >= 300
    assert roc_auc(scores[scored], labels[scored]) >= 0.6
    assert np.all(scores[SPIKES] > np.quantile(scores[scored & ~labels], 0.99))


def test_srcnn_score_many_equals_the_loop_and_restarts() -> None:
    t, x, _ = synthetic(n=2200, seed=8)
    x = x.copy()
    x[[400, 401, 1200]] = [math.nan, math.inf, math.nan]
    batch, loop = create("srcnn", window=64), create("srcnn", window=64)
    many = batch.score_many(x, t)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(many, score_loop(loop, t, x))
    assert json.dumps(batch.state()) == json.dumps(loop.state())
    for cut in (30, 64, 900):
        first = create("srcnn", window=64)
        head = score_series(first, t[:cut], x[:cut])
        resumed = restore(json.loads(json.dumps(first.state())))
        assert isinstance(resumed, SrCnn)
        tail = score_series(resumed, t[cut:], x[cut:])
        np.testing.assert_array_equal(np.concatenate([head, tail]), many)


def test_srcnn_constant_and_bad_parameters() -> None:
    x = np.full(600, 3.5)
    assert create("srcnn").score_many(x, np.arange(600.0)).max() == 0.0  # type: ignore[attr-defined]
    for params in ({"window": 32}, {"warmup": -1}, {"tail": 3}):
        with pytest.raises(ConfigError, match="srcnn"):
            create("srcnn", **params)
