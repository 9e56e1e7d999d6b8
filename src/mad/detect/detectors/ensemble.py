"""The default detector: a vote over member detectors, each behind an anomaly likelihood.

Members and their post-processing are configuration. The default, measured on NAB (see
docs/detection.md), takes the largest of:

- the likelihood of the seasonal robust z-score (hour of day), over two horizons: the mean of
  the last 10 raw scores (a short, sharp deviation) and of the last 60 (a deviation that is
  small point by point but lasts, such as a missing daily peak or a flattened day),
- the likelihood of the Holt forecast residual,
- the likelihood of the level-shift statistic,
- the range detector (1 on a value beyond the widened range seen so far).

A member spec is `{"name": ..., "params": {...}, "likelihood": bool, "horizons": [10, ...],
"weight": 1.0}`; with `likelihood`, the member scores the largest likelihood over its
`horizons` (the `short` window of `Likelihood`, default `[10]`).

`warmup` points are only learnt: it is the learning period of every likelihood and of the
range detector. On NAB it is set to the probation length, as NAB's harness does for every
detector.

One ongoing anomaly is reported once: a point whose combined score is no higher than one of the
previous `refractory` combined scores scores 0. Whatever the alert threshold, such a point is a
re-detection of something already above it within the last `refractory` points (by the same
member or another one), so this removes repeated alerts without choosing a threshold. A score
that keeps rising still comes through: a worsening anomaly is news. The default, 10, is the
likelihood's short horizon: within it, a new point is mostly the same evidence again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from mad.detect.detectors import _jit
from mad.detect.detectors.base import Detector, is_bad, score_loop
from mad.detect.detectors.registry import create, register, restore
from mad.detect.likelihood import Likelihood
from mad.detect.vote import combine, combine_many

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"name": "seasonal", "likelihood": True, "horizons": [10, 60]},
    {"name": "holt", "likelihood": True},
    {"name": "changepoint", "likelihood": True},
    {"name": "spatial", "likelihood": False, "params": {"tolerance": 0.05}},
)
DEFAULT_HORIZONS = (10,)


@njit(cache=True)
def _refractory(combined: np.ndarray, previous: np.ndarray, n_prev: int) -> tuple[np.ndarray,
                                                                               int]:
    """Zero each combined score no higher than one of the previous `len(previous)`;
    `previous[:n_prev]` holds them oldest first and is updated in place."""
    out = np.empty(len(combined))
    cap = len(previous)
    for i in range(len(combined)):
        score = combined[i]
        top = -1.0
        for j in range(n_prev):
            top = max(top, previous[j])
        out[i] = 0.0 if n_prev and score <= top else score
        if cap:
            n_prev = _jit.push(previous, n_prev, score)
    return out, n_prev


class Ensemble:
    """Weighted vote of member scores (optionally likelihood-transformed)."""

    name = "ensemble"

    def __init__(self, members: list[dict[str, Any]] | None = None, how: str = "max",
                 warmup: int = 300, refractory: int = 10) -> None:
        if refractory < 0:
            raise ValueError("refractory must be >= 0")
        self.spec = [dict(m) for m in (members if members is not None else DEFAULT_MEMBERS)]
        self.how = how
        self.warmup = warmup
        self.refractory = refractory
        self.previous: list[float] = []  # the last `refractory` combined scores
        self.members: list[Detector] = []
        self.likelihoods: list[list[Likelihood]] = []
        for m in self.spec:
            params = dict(m.get("params", {}))
            if m["name"] == "spatial":
                params.setdefault("warmup", warmup)
            self.members.append(create(m["name"], **params))
            horizons = [int(h) for h in m.get("horizons", DEFAULT_HORIZONS)]
            if m.get("likelihood") and (not horizons or min(horizons) < 1):
                raise ValueError("horizons must be a non-empty list of integers >= 1")
            self.likelihoods.append([Likelihood(learning=warmup, short=h) for h in horizons]
                                    if m.get("likelihood") else [])
        self.weights = {self._key(i): float(m.get("weight", 1.0)) for i, m in enumerate(self.spec)}
        self._cache: tuple[float, float, list[float], float] | None = None

    @staticmethod
    def _key(i: int) -> str:
        return f"m{i}"

    def _evaluate(self, x: float, t: float) -> tuple[list[float], float]:
        """Raw member scores and the combined score of `x`, cached until it is learnt."""
        if self._cache is not None and self._cache[0] == x and self._cache[1] == t:
            return self._cache[2], self._cache[3]
        raws = [m.score_one(x, t) for m in self.members]
        scores = {}
        for i, (raw, liks) in enumerate(zip(raws, self.likelihoods, strict=True)):
            scores[self._key(i)] = max(lk.score(raw) for lk in liks) if liks else raw
        combined = combine(scores, self.weights, self.how)
        self._cache = (x, t, raws, combined)
        return raws, combined

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x):
            return 0.0
        score = self._evaluate(x, t)[1]
        if self.previous and score <= max(self.previous):
            return 0.0
        return score

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        raws, combined = self._evaluate(x, t)
        self._cache = None
        if self.refractory:
            self.previous.append(combined)
            if len(self.previous) > self.refractory:
                del self.previous[0]
        for raw, liks, member in zip(raws, self.likelihoods, self.members, strict=True):
            for lk in liks:
                lk.learn(raw)
            member.learn_one(x, t)

    def member_scores(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Score then learn a batch of finite values: each member's score (after its
        likelihoods), shape (members, points)."""
        out = np.zeros((len(self.members), len(xs)))
        for i, (member, liks) in enumerate(zip(self.members, self.likelihoods, strict=True)):
            many = getattr(member, "score_many", None)
            raws = many(xs, ts) if many is not None else score_loop(member, ts, xs)
            if liks:
                out[i] = np.max([lk.update_many(raws) for lk in liks], axis=0)
            else:
                out[i] = raws
        return out

    def score_many(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Score then learn a batch, with the scores of the `score_one`/`learn_one` loop."""
        return self.score_detail(xs, ts)[0]

    def score_detail(self, xs: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`score_many`, and each member's weighted score per point (members x points; 0 for
        a NaN or infinite value): which members made an anomalous point."""
        xs = np.asarray(xs, dtype=float)
        ts = np.asarray(ts, dtype=float)
        self._cache = None
        good = np.isfinite(xs)
        scores = self.member_scores(xs[good], ts[good])
        weights = np.array([self.weights[self._key(i)] for i in range(len(self.members))])
        combined = combine_many(scores, weights, self.how)
        previous = np.zeros(self.refractory)
        previous[: len(self.previous)] = self.previous
        kept, n_prev = _refractory(combined, previous, len(self.previous))
        self.previous = previous[:n_prev].tolist()
        out = np.zeros(len(xs))
        out[good] = kept
        weighted = np.zeros((len(self.members), len(xs)))
        weighted[:, good] = weights[:, None] * scores
        return out, weighted

    def member_names(self) -> list[str]:
        return [str(m.get("name", member.name)) for m, member in zip(self.spec, self.members,
                                                                     strict=True)]

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "how": self.how, "warmup": self.warmup,
                "refractory": self.refractory, "previous": list(self.previous),
                "members": [m.state() for m in self.members],
                "likelihoods": [[lk.state() for lk in liks] for liks in self.likelihoods]}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Ensemble:
        d = cls(list(s["spec"]), str(s["how"]), int(s["warmup"]), int(s.get("refractory", 0)))
        d.previous = [float(v) for v in s.get("previous", [])]
        d.members = [restore(m) for m in s["members"]]
        d.likelihoods = [[Likelihood.from_state(lk) for lk in _as_list(liks)]
                         for liks in s["likelihoods"]]
        return d


def _as_list(saved: Any) -> list[dict[str, Any]]:
    """A member's saved likelihoods: a list, or (older states) one state or None."""
    if saved is None:
        return []
    return list(saved) if isinstance(saved, list) else [saved]


register("ensemble", Ensemble)
