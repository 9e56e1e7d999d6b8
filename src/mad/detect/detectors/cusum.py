"""Drift detector: Page's two-sided CUSUM against a reference learnt from the series itself.

The first `warmup` points give the reference level and scale (median and MAD, the scale
floored at `floor` times the level so a near-constant series does not alarm on noise). Each
later point adds its standardised deviation, less the `slack` (in scale units), to an upper
and a lower sum that never go below 0: `S+ = max(0, S+ + z - slack)`,
`S- = max(0, S- - z - slack)`, with `z` clipped to +-3. A small deviation that lasts
accumulates, so a slow drift that no single point makes visible crosses `limit`; a lone
spike, however large, adds at most 3 - slack and decays away (a threshold check flags it).
The score maps `S = max(S+, S-)` to [0, 1) as `S^2 / (S^2 + (limit / 2)^2)`: 0.8 at
`S = limit`.

The scale follows every point slowly (weight `alpha`, each deviation clipped at three scales);
the level follows only while both sums are 0 (in control), so a level that wanders within the
slack is not a drift while a drift does not drag its own reference along. After `warmup`
points in alarm the detector takes the recent points as the new reference: a lasting change
is flagged for a while, then learnt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mad.detect.detectors._stats import MAD_TO_SIGMA, median
from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register

CLIP = 3.0  # one point adds at most this many scales: a lone outlier cannot raise an alarm
MEAN_ABS_TO_SIGMA = 1.2533  # sqrt(pi / 2): a normal's sigma from its mean absolute deviation


class Cusum:
    """Two-sided cumulative sum of standardised deviations from a learnt reference."""

    name = "cusum"

    def __init__(self, warmup: int = 48, slack: float = 1.0, limit: float = 6.0,
                 alpha: float = 0.01, floor: float = 0.01) -> None:
        if warmup < 4 or slack < 0 or limit <= 0 or not 0 < alpha < 1 or floor < 0:
            raise ValueError("need warmup >= 4, slack >= 0, limit > 0, 0 < alpha < 1, "
                             "floor >= 0")
        self.warmup = warmup
        self.slack = slack
        self.limit = limit
        self.alpha = alpha
        self.floor = floor
        self.recent: list[float] = []  # the last `warmup` points
        self.level: float | None = None
        self.scale = 0.0
        self.high = 0.0
        self.low = 0.0
        self.alarmed = 0  # consecutive points in alarm

    def _sums(self, x: float) -> tuple[float, float]:
        assert self.level is not None
        z = max(-CLIP, min(CLIP, (x - self.level) / self._scale()))
        return max(0.0, self.high + z - self.slack), max(0.0, self.low - z - self.slack)

    def _scale(self) -> float:
        level = abs(self.level or 0.0)
        return max(self.scale, self.floor * level, 1e-9 * (1.0 + level))

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x) or self.level is None:
            return 0.0
        s = max(self._sums(x))
        half = self.limit / 2.0
        return s * s / (s * s + half * half)

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        self.recent.append(x)
        if len(self.recent) > self.warmup:
            del self.recent[0]
        if self.level is None:
            if len(self.recent) == self.warmup:
                self._rebase()
            return
        self.high, self.low = self._sums(x)
        dev = x - self.level
        scale = self._scale()
        clipped = min(abs(dev), 3.0 * scale)  # an outlier moves the scale a bounded step
        self.scale += self.alpha * (clipped * MEAN_ABS_TO_SIGMA - self.scale)
        if self.high == 0.0 and self.low == 0.0:
            self.alarmed = 0
            self.level += self.alpha * dev
        elif max(self.high, self.low) >= self.limit:
            self.alarmed += 1
            if self.alarmed >= self.warmup:
                self._rebase()

    def _rebase(self) -> None:
        ref = np.asarray(self.recent)
        self.level = median(ref)
        self.scale = median(np.abs(ref - self.level)) * MAD_TO_SIGMA
        self.high = self.low = 0.0
        self.alarmed = 0

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "warmup": self.warmup, "slack": self.slack,
                "limit": self.limit, "alpha": self.alpha, "floor": self.floor,
                "recent": list(self.recent), "level": self.level, "scale": self.scale,
                "high": self.high, "low": self.low, "alarmed": self.alarmed}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Cusum:
        d = cls(int(s["warmup"]), float(s["slack"]), float(s["limit"]), float(s["alpha"]),
                float(s["floor"]))
        d.recent = [float(x) for x in s["recent"]]
        d.level = None if s["level"] is None else float(s["level"])
        d.scale = float(s["scale"])
        d.high, d.low = float(s["high"]), float(s["low"])
        d.alarmed = int(s["alarmed"])
        return d


register("cusum", Cusum)
