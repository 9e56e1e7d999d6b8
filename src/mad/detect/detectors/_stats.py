"""Small numeric helpers shared by detectors: tail scores and a JSON-able EW mean/variance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAD_TO_SIGMA = 1.4826


def two_sided(z: float) -> float:
    """Map a z-like statistic to [0, 1): P(|N(0,1)| < |z|)."""
    return math.erf(abs(z) / math.sqrt(2.0))


def normal_cdf(z: float) -> float:
    """P(N(0,1) <= z)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@dataclass
class EwStats:
    """Exponentially weighted mean and variance; `alpha` is the weight of the newest point."""

    alpha: float
    mean: float = 0.0
    var: float = 0.0
    count: int = 0

    def update(self, x: float) -> None:
        if self.count == 0:
            self.mean, self.var = x, 0.0
        else:
            delta = x - self.mean
            self.mean += self.alpha * delta
            self.var = (1.0 - self.alpha) * (self.var + self.alpha * delta * delta)
        self.count += 1

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def state(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "mean": self.mean, "var": self.var, "count": self.count}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> EwStats:
        return cls(float(s["alpha"]), float(s["mean"]), float(s["var"]), int(s["count"]))


def squash(z: float, scale: float = 3.0) -> float:
    """Map |z| to [0, 1) without saturating: z^2 / (z^2 + scale^2); |z| = scale gives 0.5."""
    zz = z * z
    return zz / (zz + scale * scale)


def median(a: np.ndarray) -> float:
    """Median of a non-empty 1-d array (same value as `np.median`, with less overhead)."""
    n = len(a)
    half = n // 2
    if n % 2:
        return float(np.partition(a, half)[half])
    part = np.partition(a, (half - 1, half))
    return float((part[half - 1] + part[half]) / 2.0)
