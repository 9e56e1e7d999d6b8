"""Holt (level + trend) one-step forecast; the score is the residual's z-score.

The residual's scale is an exponentially weighted standard deviation of past residuals, so
the detector adapts to a new noise level within about `1 / var_alpha` points. The first
`warmup` points are only learnt.

`score_many` runs the same arithmetic, in the same order, in one compiled loop over a batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from mad.detect.detectors import _jit
from mad.detect.detectors._stats import EwStats, squash
from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register

# kernel state slots: has_level, level, trend, seen, then the residual's EW mean, var, count
_HAS, _LEVEL, _TREND, _SEEN, _RESID = 0, 1, 2, 3, 4


@njit(cache=True)
def _run(xs: np.ndarray, st: np.ndarray, alpha: float, beta: float, var_alpha: float,
         warmup: int) -> np.ndarray:
    """Score then learn each of `xs`, updating `st` in place."""
    out = np.zeros(len(xs))
    for i in range(len(xs)):
        x = xs[i]
        if not math.isfinite(x):
            continue
        if st[_HAS] != 0.0 and st[_SEEN] >= warmup:
            r = x - (st[_LEVEL] + st[_TREND])
            scale = _jit.ew_std(st, _RESID) + 1e-9 * (1.0 + abs(st[_LEVEL]))
            out[i] = _jit.squash(r / scale)
        if st[_HAS] == 0.0:
            st[_HAS] = 1.0
            st[_LEVEL] = x
        else:
            _jit.ew_update(st, _RESID, var_alpha, x - (st[_LEVEL] + st[_TREND]))
            prev = st[_LEVEL]
            st[_LEVEL] = alpha * x + (1 - alpha) * (st[_LEVEL] + st[_TREND])
            st[_TREND] = beta * (st[_LEVEL] - prev) + (1 - beta) * st[_TREND]
        st[_SEEN] += 1.0
    return out


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

    def score_many(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        st = np.array([0.0 if self.level is None else 1.0, self.level or 0.0, self.trend,
                       float(self.seen), *_jit.ew_to_slots(self.resid)])
        out: np.ndarray = _run(np.ascontiguousarray(xs, dtype=float), st, self.alpha,
                               self.beta, self.resid.alpha, self.warmup)
        self.level = float(st[_LEVEL]) if st[_HAS] else None
        self.trend, self.seen = float(st[_TREND]), int(st[_SEEN])
        self.resid = _jit.ew_from_slots(self.resid.alpha, st, _RESID)
        return out

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
