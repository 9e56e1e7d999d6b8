"""The anomaly likelihood's warm-up handling and the ensemble's one-alert-per-event rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mad.detect.detectors import create, score_series
from mad.detect.detectors.registry import restore
from mad.detect.likelihood import Likelihood


def test_leading_zeros_stay_out_of_the_distribution() -> None:
    """A member's warm-up zeros count towards learning but not towards mean and spread."""
    rng = np.random.default_rng(3)
    raws = rng.uniform(0.2, 0.4, 400)
    plain, padded = Likelihood(learning=100), Likelihood(learning=100)
    for r in raws:
        plain.learn(float(r))
    for r in [0.0] * 50 + list(raws[:350]):
        padded.learn(float(r))
    assert padded.seen == 400
    assert len(padded.averages) == 350
    assert min(padded.averages) > 0.15  # no zero dragged into the history
    assert padded.std == pytest.approx(plain.std, rel=0.3)


def test_zeros_after_the_first_score_are_learnt() -> None:
    lk = Likelihood(learning=10)
    for r in [0.0, 0.0, 0.5, 0.0, 0.0]:
        lk.learn(r)
    assert lk.started
    assert len(lk.averages) == 3


def test_all_zero_stream_scores_zero_and_round_trips() -> None:
    lk = Likelihood(learning=20, reestimate=10)
    scores = [lk.update(0.0) for _ in range(100)]
    assert max(scores) < 0.5
    again = Likelihood.from_state(json.loads(json.dumps(lk.state())))
    assert again.state() == lk.state()


def test_ensemble_reports_an_ongoing_event_once() -> None:
    """Members that keep firing on the same event give one detection, not one per point."""
    t = 1_700_000_000.0 + 300.0 * np.arange(600)
    rng = np.random.default_rng(5)
    x = 10.0 + rng.normal(0.0, 0.5, 600)
    x[450:470] = 100.0  # a new level: the range member says 1.0, the likelihoods follow
    with_rule = score_series(create("ensemble", warmup=200), t, x)
    without = score_series(create("ensemble", warmup=200, refractory=0), t, x)
    assert with_rule[450] == without[450] == 1.0
    assert (without[450:470] >= 0.5).sum() > 1
    assert (with_rule[450:470] >= 0.5).sum() == 1
    # no point of the next `refractory` (10) scores above the first one's 1.0: all are 0
    assert np.all(with_rule[451:461] == 0.0)


def test_ensemble_refractory_survives_a_restart() -> None:
    t = 1_700_000_000.0 + 300.0 * np.arange(500)
    x = np.sin(np.arange(500) / 10.0)
    x[300:] += 20.0
    whole = score_series(create("ensemble", warmup=100), t, x)
    first = create("ensemble", warmup=100)
    head = score_series(first, t[:302], x[:302])
    resumed = restore(json.loads(json.dumps(first.state())))
    tail = score_series(resumed, t[302:], x[302:])
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)


def test_negative_refractory_is_rejected() -> None:
    with pytest.raises(Exception, match="refractory"):
        create("ensemble", refractory=-1)


def test_member_with_two_horizons_scores_the_larger_likelihood() -> None:
    rng = np.random.default_rng(9)
    t = 1_700_000_000.0 + 300.0 * np.arange(800)
    x = rng.normal(0.0, 1.0, 800)
    both = score_series(create("ensemble", warmup=200, refractory=0, members=[
        {"name": "holt", "likelihood": True, "horizons": [10, 60]}]), t, x)
    parts = [score_series(create("ensemble", warmup=200, refractory=0, members=[
        {"name": "holt", "likelihood": True, "horizons": [h]}]), t, x) for h in (10, 60)]
    np.testing.assert_array_equal(both, np.maximum(*parts))
    with pytest.raises(Exception, match="horizons"):
        create("ensemble", members=[{"name": "holt", "likelihood": True, "horizons": []}])


def test_state_saved_before_horizons_still_restores() -> None:
    """Older states kept one likelihood (or None) per member and no refractory."""
    t = 1_700_000_000.0 + 300.0 * np.arange(300)
    x = np.sin(np.arange(300) / 7.0)
    det = create("ensemble", warmup=100, refractory=0, members=[
        {"name": "holt", "likelihood": True}, {"name": "spatial", "likelihood": False}])
    score_series(det, t, x)
    state = json.loads(json.dumps(det.state()))
    state["likelihoods"] = [state["likelihoods"][0][0], None]
    del state["refractory"], state["previous"]
    again = restore(state)
    assert again.state() == det.state()  # type: ignore[attr-defined]
