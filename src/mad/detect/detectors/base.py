"""The detector contract and the batch helper every detector shares.

A detector sees `(x, t)`: the value and its time in epoch seconds. `score_one` says how
anomalous `x` is given what was learnt so far (0 normal .. 1 anomalous) and changes nothing;
`learn_one` updates the state. During warm-up a detector scores 0. A NaN or infinite value
scores 0 and is not learnt. `state()` is a JSON-able dict; `from_state` rebuilds an equal
detector, so a restart resumes where it stopped.

A detector may also have `score_many(xs, ts) -> ndarray`: score then learn each point of a
batch in order, with exactly the scores (and the end state) of the `score_one`/`learn_one`
loop, but without a Python call per point. `score_series` and the pipeline use it when
present; the contract tests compare the two paths.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Detector(Protocol):
    """A streaming, causal anomaly detector."""

    name: str

    def learn_one(self, x: float, t: float) -> None:
        """Update the state with one point."""

    def score_one(self, x: float, t: float) -> float:
        """Anomaly score of one point in [0, 1], without learning it."""

    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as plain JSON-able values."""

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Detector:
        """Rebuild a detector from `state()`."""


def is_bad(x: float) -> bool:
    """True for values a detector must neither score nor learn (NaN, +-inf)."""
    return not math.isfinite(x)


def epoch_seconds(timestamps: np.ndarray) -> np.ndarray:
    """datetime64 or numeric timestamps as float epoch seconds."""
    arr = np.asarray(timestamps)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return arr.astype(float)


def score_series(detector: Detector, timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Score a whole series causally: each point is scored, then learnt."""
    ts = epoch_seconds(timestamps)
    xs = np.asarray(values, dtype=float)
    if len(ts) != len(xs):
        raise ValueError("timestamps and values differ in length")
    many = getattr(detector, "score_many", None)
    if many is not None:
        return np.asarray(many(xs, ts), dtype=float)
    return score_loop(detector, ts, xs)


def score_loop(detector: Detector, ts: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The per-point path: `score_one` then `learn_one` for each point, in order."""
    out = np.zeros(len(xs))
    for i in range(len(xs)):
        x, t = float(xs[i]), float(ts[i])
        out[i] = detector.score_one(x, t)
        detector.learn_one(x, t)
    return out
