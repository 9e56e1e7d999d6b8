"""The default detector: a vote over member detectors, each behind an anomaly likelihood.

Members and their post-processing are configuration. The default, measured on NAB (see
docs/detection.md), takes the largest of:

- the likelihood of the seasonal robust z-score (hour of day),
- the likelihood of the Holt forecast residual,
- the likelihood of the level-shift statistic,
- the range detector (1 on a value beyond the widened range seen so far).

`warmup` points are only learnt: it is the learning period of every likelihood and of the
range detector. On NAB it is set to the probation length, as NAB's harness does for every
detector.
"""

from __future__ import annotations

from typing import Any

from mad.detect.detectors.base import Detector, is_bad
from mad.detect.detectors.registry import create, register, restore
from mad.detect.likelihood import Likelihood
from mad.detect.vote import combine

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"name": "seasonal", "likelihood": True},
    {"name": "holt", "likelihood": True},
    {"name": "changepoint", "likelihood": True},
    {"name": "spatial", "likelihood": False, "params": {"tolerance": 0.05}},
)


class Ensemble:
    """Weighted vote of member scores (optionally likelihood-transformed)."""

    name = "ensemble"

    def __init__(self, members: list[dict[str, Any]] | None = None, how: str = "max",
                 warmup: int = 300) -> None:
        self.spec = [dict(m) for m in (members if members is not None else DEFAULT_MEMBERS)]
        self.how = how
        self.warmup = warmup
        self.members: list[Detector] = []
        self.likelihoods: list[Likelihood | None] = []
        for m in self.spec:
            params = dict(m.get("params", {}))
            if m["name"] == "spatial":
                params.setdefault("warmup", warmup)
            self.members.append(create(m["name"], **params))
            self.likelihoods.append(Likelihood(learning=warmup) if m.get("likelihood") else None)
        self.weights = {self._key(i): float(m.get("weight", 1.0)) for i, m in enumerate(self.spec)}
        self._cache: tuple[float, float, list[float]] | None = None

    @staticmethod
    def _key(i: int) -> str:
        return f"m{i}"

    def _raw(self, x: float, t: float) -> list[float]:
        if self._cache is not None and self._cache[0] == x and self._cache[1] == t:
            return self._cache[2]
        raws = [m.score_one(x, t) for m in self.members]
        self._cache = (x, t, raws)
        return raws

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x):
            return 0.0
        scores = {}
        for i, (raw, lik) in enumerate(zip(self._raw(x, t), self.likelihoods, strict=True)):
            scores[self._key(i)] = raw if lik is None else lik.score(raw)
        return combine(scores, self.weights, self.how)

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        raws = self._raw(x, t)
        self._cache = None
        for raw, lik, member in zip(raws, self.likelihoods, self.members, strict=True):
            if lik is not None:
                lik.learn(raw)
            member.learn_one(x, t)

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "how": self.how, "warmup": self.warmup,
                "members": [m.state() for m in self.members],
                "likelihoods": [None if lk is None else lk.state() for lk in self.likelihoods]}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Ensemble:
        d = cls(list(s["spec"]), str(s["how"]), int(s["warmup"]))
        d.members = [restore(m) for m in s["members"]]
        d.likelihoods = [None if lk is None else Likelihood.from_state(lk)
                         for lk in s["likelihoods"]]
        return d


register("ensemble", Ensemble)
