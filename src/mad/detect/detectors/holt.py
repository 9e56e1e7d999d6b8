"""Holt (level + trend) one-step forecast; the score is the residual's z-score.

The residual's scale is an exponentially weighted standard deviation of past residuals, so
the detector adapts to a new noise level within about `1 / var_alpha` points. The first
`warmup` points are only learnt.
"""

from __future__ import annotations

from typing import Any

from mad.detect.detectors._stats import EwStats, squash
from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register


class HoltResidual:
    """Double exponential smoothing; anomaly = surprise of the one-step forecast error."""

    name = "holt"

    def __init__(self, alpha: float = 0.3, beta: float = 0.01, var_alpha: float = 0.01,
                 warmup: int = 30) -> None:
        self.alpha = alpha
        self.beta = beta
        self.warmup = warmup
        self.level: float | None = None
        self.trend = 0.0
        self.resid = EwStats(alpha=var_alpha)
        self.seen = 0

    def _forecast(self) -> float:
        return (self.level or 0.0) + self.trend

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x) or self.level is None or self.seen < self.warmup:
            return 0.0
        r = x - self._forecast()
        scale = self.resid.std + 1e-9 * (1.0 + abs(self.level))
        return squash(r / scale)

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        if self.level is None:
            self.level = x
        else:
            r = x - self._forecast()
            self.resid.update(r)
            prev = self.level
            self.level = self.alpha * x + (1 - self.alpha) * (self.level + self.trend)
            self.trend = self.beta * (self.level - prev) + (1 - self.beta) * self.trend
        self.seen += 1

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha, "beta": self.beta,
                "warmup": self.warmup, "level": self.level, "trend": self.trend,
                "resid": self.resid.state(), "seen": self.seen}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> HoltResidual:
        d = cls(float(s["alpha"]), float(s["beta"]), float(s["resid"]["alpha"]),
                int(s["warmup"]))
        d.level = None if s["level"] is None else float(s["level"])
        d.trend = float(s["trend"])
        d.resid = EwStats.from_state(s["resid"])
        d.seen = int(s["seen"])
        return d


register("holt", HoltResidual)
