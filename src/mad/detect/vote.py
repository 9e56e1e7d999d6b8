"""Decision engine: a weighted vote of detector scores, then alerts with hysteresis/cooldown.

Pure functions and a small JSON-able state; no I/O. Two steps, each swappable:

1. `combine` turns the scores of several detectors (each in [0, 1]) into one score:
   `"max"` takes the largest weighted score (any confident detector speaks for all),
   `"mean"` the weighted average (detectors must agree).
2. `Decider` turns the combined score into alerts: an alert opens when the score reaches
   `threshold`, stays open until it falls below `clear` (hysteresis, `clear <= threshold`),
   and after it closes no new alert opens for `cooldown` points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mad.errors import ConfigError

HOW = ("max", "mean")


def combine(scores: Mapping[str, float], weights: Mapping[str, float] | None = None,
            how: str = "max") -> float:
    """One score in [0, 1] from named detector scores; a missing weight counts as 1."""
    if how not in HOW:
        raise ConfigError(f"unknown vote {how!r}; known: {', '.join(HOW)}")
    if not scores:
        return 0.0
    w = {name: (1.0 if weights is None else float(weights.get(name, 1.0))) for name in scores}
    if how == "max":
        return max(min(1.0, w[name] * s) for name, s in scores.items())
    total = sum(w.values())
    return sum(w[name] * s for name, s in scores.items()) / total if total > 0 else 0.0


def combine_many(scores: np.ndarray, weights: np.ndarray, how: str = "max") -> np.ndarray:
    """`combine` for every column of `scores` (members x points) at once."""
    if how not in HOW:
        raise ConfigError(f"unknown vote {how!r}; known: {', '.join(HOW)}")
    if scores.shape[0] == 0:
        return np.zeros(scores.shape[1])
    weighted = weights[:, None] * scores
    if how == "max":
        result: np.ndarray = np.minimum(1.0, weighted).max(axis=0)
        return result
    total = float(weights.sum())
    if total <= 0:
        return np.zeros(scores.shape[1])
    summed = weighted[0].copy()
    for row in weighted[1:]:
        summed += row
    return summed / total


@dataclass
class Decider:
    """Alerting with hysteresis and cooldown over a stream of combined scores."""

    threshold: float = 0.5
    clear: float = 0.3
    cooldown: int = 0
    open: bool = field(default=False)
    quiet_left: int = field(default=0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.clear <= self.threshold <= 1.0:
            raise ConfigError("vote: need 0 <= clear <= threshold <= 1")
        if self.cooldown < 0:
            raise ConfigError("vote: cooldown must be >= 0")

    def step(self, score: float) -> bool:
        """True when this point opens a new alert."""
        if self.open:
            if score < self.clear:
                self.open = False
                self.quiet_left = self.cooldown
            return False
        if self.quiet_left > 0:
            self.quiet_left -= 1
            return False
        if score >= self.threshold:
            self.open = True
            return True
        return False

    def run(self, scores: Sequence[float]) -> list[bool]:
        """`step` over a whole series; returns one flag per point."""
        return [self.step(s) for s in scores]

    def state(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "clear": self.clear, "cooldown": self.cooldown,
                "open": self.open, "quiet_left": self.quiet_left}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Decider:
        return cls(float(s["threshold"]), float(s["clear"]), int(s["cooldown"]),
                   bool(s["open"]), int(s["quiet_left"]))
