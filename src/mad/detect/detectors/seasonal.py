"""Robust z-score against a seasonal baseline: median and MAD of the same hour of day/week.

Each point falls in a bucket (its hour of the day, or of the week); the detector keeps the
last `per_bucket` values of every bucket and scores `|x - median| / (1.4826 * MAD)` as a
two-sided tail probability. The scale never drops below `scale_floor` times the typical
deviation of the whole series, so a constant series scores 0 and its first change scores 1.
Gaps and duplicated timestamps need no special care: buckets come from the clock.
`score_many` runs the same arithmetic in one compiled loop over a batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from mad.detect.detectors import _jit
from mad.detect.detectors._stats import MAD_TO_SIGMA, EwStats, median, squash
from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register

PERIODS = {"day": 24, "week": 168}


@njit(cache=True)
def _run(xs: np.ndarray, ts: np.ndarray, buf: np.ndarray, cnt: np.ndarray, spread: np.ndarray,
         buckets: int, min_bucket: int, scale_floor: float) -> np.ndarray:
    """Score then learn each point; `buf[b, :cnt[b]]` holds bucket b's values, oldest first."""
    out = np.zeros(len(xs))
    for i in range(len(xs)):
        x = xs[i]
        if not math.isfinite(x):
            continue
        b = int(ts[i] // 3600) % buckets
        n = cnt[b]
        if n >= min_bucket:
            hist = buf[b, :n]
            med = _jit.median_of(hist)
            mad = _jit.median_of(np.abs(hist - med)) * MAD_TO_SIGMA
            floor = scale_floor * _jit.ew_std(spread, 0) + 1e-9 * (1.0 + abs(med))
            out[i] = _jit.squash((x - med) / max(mad, floor))
        cnt[b] = _jit.push(buf[b], n, x)
        _jit.ew_update(spread, 0, 0.01, x)
    return out


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

    def score_many(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        buckets = PERIODS[self.period]
        buf = np.zeros((buckets, self.per_bucket))
        cnt = np.zeros(buckets, dtype=np.int64)
        for key, hist in self.buckets.items():
            kept = hist[len(hist) - self.per_bucket:] if len(hist) > self.per_bucket else hist
            buf[int(key), : len(kept)] = kept
            cnt[int(key)] = len(kept)
        spread = np.array(_jit.ew_to_slots(self.spread))
        out: np.ndarray = _run(np.ascontiguousarray(xs, dtype=float),
                               np.ascontiguousarray(ts, dtype=float), buf, cnt, spread,
                               buckets, self.min_bucket, self.scale_floor)
        # keys in the order the per-point path adds them: known ones, then by first use
        good = np.isfinite(xs)
        used = (np.asarray(ts, dtype=float)[good] // 3600).astype(np.int64) % buckets
        ids, first = np.unique(used, return_index=True)
        order = list(self.buckets) + [str(b) for b in ids[np.argsort(first)]
                                      if str(b) not in self.buckets]
        self.buckets = {k: buf[int(k), : cnt[int(k)]].tolist() for k in order}
        self.spread = _jit.ew_from_slots(self.spread.alpha, spread, 0)
        return out

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
