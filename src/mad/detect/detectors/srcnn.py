"""SR-CNN (Ren et al. 2019): a small 1-D convolutional network over Spectral Residual saliency.

The window, its extrapolated tail and its saliency map are those of `sr` (see sr.py). The
network sees the saliency of the last `span` values up to the newest one and of the tail after
it, each divided by the mean saliency of the `z` values before the newest one (the local mean
of the `sr` score), as `log(1 + S / mean)`. Two convolutions (4, then 8 filters of 5
taps), a hidden dense layer of 8 units and a logistic output give the probability that the
newest value is an injected anomaly; that probability is the score (about 2 000 weights).
The activations are leaky ReLUs (slope `leak` below 0) rather than the plain ReLU: with plain
ReLUs the output had a ceiling, reached whenever every hidden unit was off, and many unlike
windows tied there.

The weights come from scripts/train_srcnn.py, which generates its own synthetic series (noise,
autoregressive, seasonal, random walks, trends, counts), injects spikes, dips and level shifts,
and trains on them with a fixed seed; they are stored in srcnn.json next to this module,
together with the feature settings they were trained with (`span`, `tail`, `q`, `z`). Only
`window` and `warmup` are parameters.

The forward pass is compiled with numba, one window after another with loops in a fixed
order, so a window scores the same bits alone (`score_one`) or in a batch (`score_many`).
Warm-up, NaN handling, state and restarts are those of `sr`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from mad.detect.detectors.registry import register
from mad.detect.detectors.sr import SpectralResidual, local_saliency, saliency_map

WEIGHTS = Path(__file__).with_name("srcnn.json")


@dataclass(frozen=True)
class Model:
    """Trained weights and the feature settings they expect."""

    span: int
    tail: int
    q: int
    z: int
    w1: np.ndarray  # (channels1, kernel)
    b1: np.ndarray
    w2: np.ndarray  # (channels2, channels1, kernel)
    b2: np.ndarray
    w3: np.ndarray  # (hidden, time, channels2)
    b3: np.ndarray
    w4: np.ndarray  # (hidden,)
    b4: float
    leak: float  # slope of the leaky ReLU below 0

    @property
    def length(self) -> int:
        """Number of saliency values the network reads: `span` + `tail`."""
        return self.span + self.tail


def model_from_json(data: dict[str, Any]) -> Model:
    """A `Model` from the JSON written by scripts/train_srcnn.py."""
    f = data["features"]
    w = data["weights"]

    def arr(name: str) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(w[name], dtype=float))

    model = Model(int(f["span"]), int(f["tail"]), int(f["q"]), int(f["z"]), arr("w1"),
                  arr("b1"), arr("w2"), arr("b2"), arr("w3"), arr("b3"), arr("w4"),
                  float(w["b4"]), float(data["leak"]))
    kernel = model.w1.shape[1]
    if model.w3.shape[1] != model.length - 2 * (kernel - 1):
        raise ValueError("srcnn weights do not match their feature length")
    return model


@lru_cache(maxsize=1)
def load_model() -> Model:
    """The shipped weights (read once)."""
    return model_from_json(json.loads(WEIGHTS.read_text()))


def features(saliency: np.ndarray, window: int, span: int, z: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Network input per row, `log(1 + S / local mean)` over the last `span` values and the
    tail, and the local mean itself (0 for a window with nothing to score)."""
    local = local_saliency(saliency, window, z)
    seg = saliency[:, window - span :]
    safe = np.where(local > 0.0, local, 1.0)
    x = np.log1p(seg / safe[:, None])
    x[local <= 0.0] = 0.0
    return np.ascontiguousarray(x), local


@njit(cache=True)
def forward(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
            w3: np.ndarray, b3: np.ndarray, w4: np.ndarray, b4: float,
            leak: float) -> np.ndarray:
    """Output probability of each row of `x`, row by row in a fixed order."""
    rows, length = x.shape
    c1, kernel = w1.shape
    c2 = w2.shape[0]
    hidden = w3.shape[0]
    t1 = length - kernel + 1
    t2 = t1 - kernel + 1
    a1 = np.empty((t1, c1))
    a2 = np.empty((t2, c2))
    out = np.empty(rows)
    for r in range(rows):
        for t in range(t1):
            for c in range(c1):
                s = b1[c]
                for k in range(kernel):
                    s += w1[c, k] * x[r, t + k]
                a1[t, c] = s if s > 0.0 else leak * s
        for t in range(t2):
            for c in range(c2):
                s = b2[c]
                for i in range(c1):
                    for k in range(kernel):
                        s += w2[c, i, k] * a1[t + k, i]
                a2[t, c] = s if s > 0.0 else leak * s
        logit = b4
        for h in range(hidden):
            s = b3[h]
            for t in range(t2):
                for c in range(c2):
                    s += w3[h, t, c] * a2[t, c]
            logit += w4[h] * (s if s > 0.0 else leak * s)
        out[r] = 1.0 / (1.0 + np.exp(-logit))
    return out


def predict(model: Model, rows: np.ndarray) -> np.ndarray:
    """Scores of the newest value of each row of `rows` (shape `(k, window)`)."""
    window = rows.shape[1]
    saliency = saliency_map(rows, model.tail, 1, model.q, "last")
    x, local = features(saliency, window, model.span, model.z)
    scores: np.ndarray = forward(x, model.w1, model.b1, model.w2, model.b2, model.w3,
                                 model.b3, model.w4, model.b4, model.leak)
    scores[local <= 0.0] = 0.0
    return scores


class SrCnn(SpectralResidual):
    """A small 1-D CNN over the Spectral Residual saliency of the newest value's window."""

    name = "srcnn"

    def __init__(self, window: int = 256, warmup: int = 0) -> None:
        model = load_model()
        if window <= max(model.span, model.z):
            raise ValueError(f"window must be > {max(model.span, model.z)}")
        super().__init__(window=window, tail=model.tail, q=model.q, z=model.z, warmup=warmup)
        self.model = model

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return predict(self.model, rows)

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "window": self.window, "warmup": self.warmup,
                "recent": list(self.recent), "seen": self.seen}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> SrCnn:
        d = cls(int(s["window"]), int(s["warmup"]))
        d.recent = [float(x) for x in s["recent"]]
        d.seen = int(s["seen"])
        return d


register("srcnn", SrCnn)
