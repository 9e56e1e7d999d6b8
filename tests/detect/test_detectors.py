"""Every registered detector: edge cases, the JSON state round trip, and beating chance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mad.detect.detectors import create, known, score_series
from mad.detect.detectors.registry import restore
from mad.errors import ConfigError

NAMES = known()
SMALL = {"ensemble": {"warmup": 50}, "spatial": {"warmup": 50}, "hst": {"window": 50}}
# detectors of drift in a deseasonalised series (the quality history feeds `cusum` ratios to
# the same hour on earlier days): judged on the series without its daily cycle
DESEASONALISED = {"cusum"}


def make(name: str) -> object:
    return create(name, **SMALL.get(name, {}))


def run(name: str, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    scores = score_series(make(name), t, x)  # type: ignore[arg-type]
    assert scores.shape == x.shape
    assert np.all(np.isfinite(scores))
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    return scores


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a labelled point outscores an unlabelled one (ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def test_registry_has_the_builtins() -> None:
    assert {"seasonal", "holt", "changepoint", "hst", "spatial", "ensemble"} <= set(NAMES)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"known: .*ensemble"):
        create("no-such-detector")


def test_bad_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="holt"):
        create("holt", no_such_parameter=1)


@pytest.mark.parametrize("name", NAMES)
def test_beats_chance_on_labelled_data(name: str, series: tuple) -> None:
    t, x, labels = series
    if name in DESEASONALISED:
        x = x - 3.0 * np.sin(2 * np.pi * t / 86_400.0)
    scores = run(name, t, x)
    scored = np.arange(len(x)) >= 300  # past every warm-up
    assert roc_auc(scores[scored], labels[scored]) >= 0.5


@pytest.mark.parametrize("name", NAMES)
def test_nan_scores_zero_and_is_not_learnt(name: str, series: tuple) -> None:
    """A NaN/inf value scores 0 and leaves the state untouched."""
    t, x, _ = series
    x = x[:600].copy()
    x[400] = math.nan
    x[450] = math.inf
    scores = run(name, t[:600], x)
    assert scores[400] == 0.0 and scores[450] == 0.0
    clean = make(name)
    score_series(clean, t[:400], x[:400])  # type: ignore[arg-type]
    dirty = make(name)
    score_series(dirty, t[:401], x[:401])  # type: ignore[arg-type]
    assert json.dumps(dirty.state()) == json.dumps(clean.state())  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", NAMES)
def test_gaps_in_timestamps(name: str, series: tuple) -> None:
    """Gaps are fine: points are processed in order, seasonal buckets come from the clock."""
    t, x, _ = series
    keep = np.ones(len(x), dtype=bool)
    keep[500:800] = False  # a day missing
    run(name, t[keep][:1200], x[keep][:1200])


@pytest.mark.parametrize("name", NAMES)
def test_duplicated_timestamps(name: str, series: tuple) -> None:
    """A repeated timestamp is processed as one more point, in arrival order."""
    t, x, _ = series
    t2 = np.repeat(t[:400], 2)
    x2 = np.repeat(x[:400], 2)
    run(name, t2, x2)


@pytest.mark.parametrize("name", NAMES)
def test_constant_series_scores_zero(name: str, series: tuple) -> None:
    t, _, _ = series
    scores = run(name, t[:800], np.full(800, 42.0))
    assert scores.max() <= 0.5  # nothing stands out; likelihood noise stays below an alert


@pytest.mark.parametrize("name", NAMES)
def test_three_points(name: str) -> None:
    """Too short to leave warm-up: every score is 0."""
    scores = run(name, np.array([0.0, 60.0, 120.0]), np.array([1.0, 5.0, -3.0]))
    assert scores.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("name", NAMES)
def test_restored_mid_series_scores_like_uninterrupted(name: str, series: tuple) -> None:
    t, x, _ = series
    n, cut = 1200, 700
    whole = score_series(make(name), t[:n], x[:n])  # type: ignore[arg-type]
    first = make(name)
    head = score_series(first, t[:cut], x[:cut])  # type: ignore[arg-type]
    saved = json.loads(json.dumps(first.state()))  # type: ignore[attr-defined]
    resumed = restore(saved)
    tail = score_series(resumed, t[cut:n], x[cut:n])
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)
