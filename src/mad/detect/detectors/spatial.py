"""Range detector: a value outside the range seen so far (widened by `tolerance`) scores 1.

After `warmup` points, `x` scores 1 when it lies below `lo - tolerance * span` or above
`hi + tolerance * span` (`lo`, `hi` and `span = hi - lo` over every value learnt so far) and
0 otherwise. It fires on the first value of a new extreme level, which is when a level shift
or a spike is worth most, and stays silent inside the known range. `score_many` does the
same over a batch with running minima and maxima.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register


class RangeBreak:
    """Binary detector of values beyond the widened historical range."""

    name = "spatial"

    def __init__(self, tolerance: float = 0.05, warmup: int = 150) -> None:
        self.tolerance = tolerance
        self.warmup = warmup
        self.lo: float | None = None
        self.hi: float | None = None
        self.seen = 0

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x) or self.lo is None or self.hi is None or self.seen < self.warmup:
            return 0.0
        margin = self.tolerance * (self.hi - self.lo)
        return 1.0 if x > self.hi + margin or x < self.lo - margin else 0.0

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        self.lo = x if self.lo is None else min(self.lo, x)
        self.hi = x if self.hi is None else max(self.hi, x)
        self.seen += 1

    def score_many(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        xs = np.asarray(xs, dtype=float)
        out = np.zeros(len(xs))
        good = np.flatnonzero(np.isfinite(xs))
        if not len(good):
            return out
        vals = xs[good]
        lo = np.minimum.accumulate(vals if self.lo is None else np.append(self.lo, vals))
        hi = np.maximum.accumulate(vals if self.hi is None else np.append(self.hi, vals))
        if self.lo is not None:
            lo, hi = lo[1:], hi[1:]
        # the range before each point: the running extremes up to the previous one
        lo_before = np.append(np.inf if self.lo is None else self.lo, lo[:-1])
        hi_before = np.append(-np.inf if self.hi is None else self.hi, hi[:-1])
        seen_before = self.seen + np.arange(len(vals))
        margin = self.tolerance * (hi_before - lo_before)
        ready = np.isfinite(lo_before) & (seen_before >= self.warmup)
        breaks = ready & ((vals > hi_before + margin) | (vals < lo_before - margin))
        out[good] = breaks.astype(float)
        self.lo, self.hi = float(lo[-1]), float(hi[-1])
        self.seen += len(vals)
        return out

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "tolerance": self.tolerance, "warmup": self.warmup,
                "lo": self.lo, "hi": self.hi, "seen": self.seen}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> RangeBreak:
        d = cls(float(s["tolerance"]), int(s["warmup"]))
        d.lo = None if s["lo"] is None else float(s["lo"])
        d.hi = None if s["hi"] is None else float(s["hi"])
        d.seen = int(s["seen"])
        return d


register("spatial", RangeBreak)
