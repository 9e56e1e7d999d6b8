"""The batch path (`score_many`) gives the per-point path's scores and end state, for every
detector that has one, the likelihood and the default ensemble; in one batch or in pieces."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from mad.detect.detectors import create, known
from mad.detect.detectors.base import score_loop
from mad.detect.likelihood import Likelihood

SMALL = {"ensemble": {"warmup": 50}, "spatial": {"warmup": 50}, "hst": {"window": 50},
         "rcf": {}, "sr": {}}
BATCHED = [n for n in known() if hasattr(create(n, **SMALL.get(n, {})), "score_many")]


def dirty(series: tuple) -> tuple[np.ndarray, np.ndarray]:
    t, x, _ = series
    x = x.copy()
    x[[310, 311, 900]] = [math.nan, math.inf, -math.inf]
    x[1200:1215] = x[1199]  # a flat stretch
    return t, x


def test_the_default_members_have_a_batch_path() -> None:
    assert {"ensemble", "seasonal", "holt", "changepoint", "spatial"} <= set(BATCHED)


@pytest.mark.parametrize("name", BATCHED)
def test_batch_equals_point_by_point(name: str, series: tuple) -> None:
    t, x = dirty(series)
    one = create(name, **SMALL.get(name, {}))
    expected = score_loop(one, t, x)
    many = create(name, **SMALL.get(name, {}))
    got = many.score_many(x, t)  # type: ignore[attr-defined]
    assert np.array_equal(got, expected)
    assert json.dumps(many.state()) == json.dumps(one.state())
    assert expected[900] == 0.0 and expected.max() > 0.0


@pytest.mark.parametrize("name", BATCHED)
def test_batches_of_any_size_and_restarts_between_them(name: str, series: tuple) -> None:
    """Pieces of 1, 7, 60, ... points, each after a JSON round trip of the state, give the
    scores of one uninterrupted batch."""
    from mad.detect.detectors.registry import restore

    t, x = dirty(series)
    whole = create(name, **SMALL.get(name, {})).score_many(x, t)  # type: ignore[attr-defined]
    det = create(name, **SMALL.get(name, {}))
    parts = []
    cuts = [0, 1, 8, 68, 300, 301, 1000, 1207, len(x)]
    for a, b in itertools.pairwise(cuts):
        parts.append(det.score_many(x[a:b], t[a:b]))  # type: ignore[attr-defined]
        det = restore(json.loads(json.dumps(det.state())))
    assert np.array_equal(np.concatenate(parts), whole)


def test_likelihood_batch_equals_point_by_point(series: tuple) -> None:
    rng = np.random.default_rng(5)
    raws = np.concatenate([np.zeros(40), rng.random(3000) ** 3, np.ones(20)])
    one = Likelihood(learning=300, short=10, history=500, reestimate=50)
    expected = np.array([one.update(float(r)) for r in raws])
    many = Likelihood(learning=300, short=10, history=500, reestimate=50)
    got = np.concatenate([many.update_many(raws[:1234]), many.update_many(raws[1234:])])
    assert np.array_equal(got, expected)
    assert json.dumps(many.state()) == json.dumps(one.state())
    assert expected[-20:].max() > 0.5  # the run of ones is rare
