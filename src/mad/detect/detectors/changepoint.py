"""Level-shift detector: the median of the last few points against a longer reference window.

The recent window (the point being scored and the `recent - 1` before it) is compared with the
`reference` points before it: `z = (median(recent) - median(ref)) / (1.4826 * MAD(ref))`.
A median ignores a lone spike, so this reacts to shifts of the level that last, and it reacts
as soon as half of the recent window has moved. Needs `reference // 4` points of history.
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


@njit(cache=True)
def _mad_sorted(srt: np.ndarray, m: int, med: float) -> float:
    """Median of |srt[:m] - med| for sorted `srt`, merging outwards from `med` (no sort)."""
    j = int(np.searchsorted(srt[:m], med))
    i = j - 1
    half = m // 2
    below = 0.0
    d = 0.0
    for _ in range(half + 1):
        below = d
        if i >= 0 and (j >= m or med - srt[i] <= srt[j] - med):
            d = med - srt[i]
            i -= 1
        else:
            d = srt[j] - med
            j += 1
    return d if m % 2 else (below + d) / 2.0


@njit(cache=True)
def _sorted_insert(srt: np.ndarray, m: int, v: float) -> int:
    at = int(np.searchsorted(srt[:m], v))
    srt[at + 1 : m + 1] = srt[at:m].copy()
    srt[at] = v
    return m + 1


@njit(cache=True)
def _sorted_remove(srt: np.ndarray, m: int, v: float) -> int:
    at = int(np.searchsorted(srt[:m], v))
    srt[at : m - 1] = srt[at + 1 : m].copy()
    return m - 1


@njit(cache=True)
def _run(xs: np.ndarray, buf: np.ndarray, n: int, spread: np.ndarray, reference: int,
         recent: int, scale_floor: float) -> tuple[np.ndarray, int]:
    """Score then learn each point; `buf[:n]` holds the buffer, oldest first. The reference
    part is also kept sorted, so its median and MAD need no sort per point."""
    out = np.zeros(len(xs))
    cap = len(buf)
    k = recent - 1
    need = max(4, reference // 4)
    now = np.empty(recent)
    m = max(n - k, 0)
    srt = np.empty(cap + 1)
    srt[:m] = np.sort(buf[:m])
    for i in range(len(xs)):
        x = xs[i]
        if not math.isfinite(x):
            continue
        if m >= need:
            half = m // 2
            med = srt[half] if m % 2 else (srt[half - 1] + srt[half]) / 2.0
            mad = _mad_sorted(srt, m, med) * MAD_TO_SIGMA
            floor = scale_floor * _jit.ew_std(spread, 0) + 1e-9 * (1.0 + abs(med))
            now[:k] = buf[n - k : n]
            now[k] = x
            out[i] = _jit.squash((_jit.median_of(now) - med) / max(mad, floor))
        # the value that moves from the recent part into the reference, and the one that
        # leaves the buffer when it is full
        if n - k >= 0:
            m = _sorted_insert(srt, m, x if k == 0 else buf[n - k])
        if n == cap:
            m = _sorted_remove(srt, m, buf[0])
        n = _jit.push(buf, n, x)
        _jit.ew_update(spread, 0, 0.01, x)
    return out, n


class LevelShift:
    """Two-window robust test for a change of level."""

    name = "changepoint"

    def __init__(self, reference: int = 240, recent: int = 5, scale_floor: float = 0.1) -> None:
        if recent < 1 or reference < 4:
            raise ValueError("need recent >= 1 and reference >= 4")
        self.reference = reference
        self.recent = recent
        self.scale_floor = scale_floor
        self.buffer: list[float] = []
        self.spread = EwStats(alpha=0.01)

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x):
            return 0.0
        k = self.recent - 1
        ref = self.buffer[: len(self.buffer) - k] if k else self.buffer
        if len(ref) < max(4, self.reference // 4):
            return 0.0
        recent = [*self.buffer[len(self.buffer) - k :], x] if k else [x]
        ref_arr = np.asarray(ref)
        med = median(ref_arr)
        mad = median(np.abs(ref_arr - med)) * MAD_TO_SIGMA
        floor = self.scale_floor * self.spread.std + 1e-9 * (1.0 + abs(med))
        return squash((median(np.asarray(recent)) - med) / max(mad, floor))

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        self.buffer.append(x)
        if len(self.buffer) > self.reference + self.recent - 1:
            del self.buffer[0]
        self.spread.update(x)

    def score_many(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        buf = np.zeros(self.reference + self.recent - 1)
        kept = self.buffer[len(self.buffer) - len(buf):] if len(self.buffer) > len(buf) \
            else self.buffer
        buf[: len(kept)] = kept
        spread = np.array(_jit.ew_to_slots(self.spread))
        out, n = _run(np.ascontiguousarray(xs, dtype=float), buf, len(kept), spread,
                      self.reference, self.recent, self.scale_floor)
        self.buffer = buf[:n].tolist()
        self.spread = _jit.ew_from_slots(self.spread.alpha, spread, 0)
        result: np.ndarray = out
        return result

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "recent": self.recent,
                "scale_floor": self.scale_floor, "buffer": list(self.buffer),
                "spread": self.spread.state()}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> LevelShift:
        d = cls(int(s["reference"]), int(s["recent"]), float(s["scale_floor"]))
        d.buffer = [float(x) for x in s["buffer"]]
        d.spread = EwStats.from_state(s["spread"])
        return d


register("changepoint", LevelShift)
