"""Robust z-score against a seasonal baseline: median and MAD of the same hour of day/week.

Each point falls in a bucket (its hour of the day, or of the week); the detector keeps the
last `per_bucket` values of every bucket and scores `|x - median| / (1.4826 * MAD)` as a
two-sided tail probability. The scale never drops below `scale_floor` times the typical
deviation of the whole series, so a constant series scores 0 and its first change scores 1.
Gaps and duplicated timestamps need no special care: buckets come from the clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mad.detect.detectors._stats import MAD_TO_SIGMA, EwStats, median, squash
from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register

PERIODS = {"day": 24, "week": 168}


class SeasonalZScore:
    """Median/MAD z-score of a value against the history of its hour-of-day/-week bucket."""

    name = "seasonal"

    def __init__(self, period: str = "day", per_bucket: int = 48, min_bucket: int = 6,
                 scale_floor: float = 0.1) -> None:
        if period not in PERIODS:
            raise ValueError(f"period must be one of {sorted(PERIODS)}")
        self.period = period
        self.per_bucket = per_bucket
        self.min_bucket = min_bucket
        self.scale_floor = scale_floor
        self.buckets: dict[str, list[float]] = {}
        self.spread = EwStats(alpha=0.01)

    def _bucket(self, t: float) -> str:
        return str(int(t // 3600) % PERIODS[self.period])

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x):
            return 0.0
        hist = self.buckets.get(self._bucket(t), [])
        if len(hist) < self.min_bucket:
            return 0.0
        arr = np.asarray(hist)
        med = median(arr)
        mad = median(np.abs(arr - med)) * MAD_TO_SIGMA
        floor = self.scale_floor * self.spread.std + 1e-9 * (1.0 + abs(med))
        return squash((x - med) / max(mad, floor))

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        hist = self.buckets.setdefault(self._bucket(t), [])
        hist.append(x)
        if len(hist) > self.per_bucket:
            del hist[0]
        self.spread.update(x)

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "period": self.period, "per_bucket": self.per_bucket,
                "min_bucket": self.min_bucket, "scale_floor": self.scale_floor,
                "buckets": {k: list(v) for k, v in self.buckets.items()},
                "spread": self.spread.state()}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> SeasonalZScore:
        d = cls(s["period"], int(s["per_bucket"]), int(s["min_bucket"]), float(s["scale_floor"]))
        d.buckets = {str(k): [float(x) for x in v] for k, v in s["buckets"].items()}
        d.spread = EwStats.from_state(s["spread"])
        return d



register("seasonal", SeasonalZScore)
