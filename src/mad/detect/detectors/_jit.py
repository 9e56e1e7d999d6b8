"""Compiled helpers the detectors' batch kernels share: an exponentially weighted mean and
variance kept in three slots of a state array, the median of a small buffer, and `squash`.

They do the arithmetic of `mad.detect.detectors._stats` in the same order, so a kernel and a
pure-Python detector built on `_stats` agree on every value they have in common.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mad.detect.detectors._stats import EwStats

EW_SLOTS = 3  # mean, var, count


@njit(cache=True)
def ew_update(st: np.ndarray, at: int, alpha: float, x: float) -> None:
    """`EwStats.update` on slots `st[at:at + 3]` (mean, var, count)."""
    if st[at + 2] == 0.0:
        st[at] = x
        st[at + 1] = 0.0
    else:
        delta = x - st[at]
        st[at] += alpha * delta
        st[at + 1] = (1.0 - alpha) * (st[at + 1] + alpha * delta * delta)
    st[at + 2] += 1.0


@njit(cache=True)
def ew_std(st: np.ndarray, at: int) -> float:
    return math.sqrt(max(st[at + 1], 0.0))


@njit(cache=True)
def squash(z: float) -> float:
    """`_stats.squash` with its default scale 3: z^2 / (z^2 + 9)."""
    zz = z * z
    return zz / (zz + 9.0)


@njit(cache=True)
def median_of(a: np.ndarray) -> float:
    """Median of a 1-d array (sorted copy; the same value as `np.median`)."""
    s = np.sort(a)
    n = len(s)
    half = n // 2
    if n % 2:
        return float(s[half])
    return float((s[half - 1] + s[half]) / 2.0)


@njit(cache=True)
def push(buf: np.ndarray, n: int, x: float) -> int:
    """Append `x` to the `n` values of `buf` (oldest first), dropping the oldest when full;
    the new count."""
    cap = len(buf)
    if n == cap:
        buf[: cap - 1] = buf[1:].copy()
        buf[cap - 1] = x
        return n
    buf[n] = x
    return n + 1


def ew_to_slots(stats: EwStats) -> list[float]:
    return [stats.mean, stats.var, float(stats.count)]


def ew_from_slots(alpha: float, st: np.ndarray, at: int) -> EwStats:
    return EwStats(alpha, float(st[at]), float(st[at + 1]), int(st[at + 2]))
