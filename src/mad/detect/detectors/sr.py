"""Spectral Residual (Ren et al. 2019, "Time-Series Anomaly Detection Service at Microsoft").

The newest value is scored from a sliding window of the last `window` values:

1. Extrapolated tail: `tail` estimated points are appended after the newest value, so that it
   sits inside the transformed sequence instead of at its edge. Only the past and the newest
   value are used: the score is causal. `extrapolate="gradient"` is the paper's estimate: the
   mean slope from the newest value `x_n` back to each of the `slope` values before it,
   `g = mean_i (x_n - x_{n-i}) / i`, continued as `x_{n-slope+1} + slope * g`.
   `extrapolate="last"` (the default) repeats the newest value. The paper's estimate follows a
   spike: a spike of height `h` is continued at about `2.3 h` (for `slope=5`), so the window
   ends on a plateau and the saliency falls on the step into the tail rather than on the
   newest value. Measured on synthetic series and on NAB (docs/detection.md), it scores such a
   spike below normal points and its NAB score is near 0; repeating the newest value keeps a
   spike a spike.
2. Saliency: the extended window minus its mean goes through a real FFT. The spectral residual
   is the log amplitude minus its moving average over `q` neighbouring frequencies (on the
   periodic, mirror-symmetric spectrum of a real signal). It goes back through the inverse FFT
   with the original phase, and the magnitude is the saliency map.
3. Score: `r = (S_n - mean(S)) / mean(S)` compares the saliency of the newest value with the
   mean saliency of the `z` values before it. It is mapped to `max(r, 0) / (max(r, 0) + scale)`,
   which is monotone, 0 for a value no more salient than its neighbours, 0.5 at `r = scale`,
   and below 1.

Level and scale: removing the mean zeroes the DC bin, which carries the level and nothing
else, so it is left out of the residual's moving average and of the reconstruction. Adding a
level to the window then changes nothing. Multiplying by a factor (of either sign) multiplies
the amplitudes, which shifts the log amplitude by a constant that the residual removes, and it
leaves the magnitude of the reconstruction alone. So the score depends only on the shape of the
window (up to rounding). Amplitudes below 1/1000 of the window's mean amplitude are raised to
it before the log: noise almost never goes there, while the exact zeros of a structured window
(a constant series with one step) would otherwise dominate the residual. A window with no
amplitude at all (a constant series) scores 0, and so does a saliency map whose local mean is 0.

Warm-up: a point scores 0 until `window - 1` values precede it and at least `warmup` values
have been learnt. NaN and infinite values score 0 and are not learnt. Timestamps are not used:
the window is the last values in arrival order.

`score_many` builds all the windows of a batch at once (a strided view over the kept history
and the batch) and scores them with the same row-wise code as `score_one`, which scores a batch
of one window. Every step of that code is elementwise or works along one row, so both paths
give the same bits.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register

Extrapolate = Literal["last", "gradient"]
CHUNK = 4096  # windows per FFT call in `score_many` (bounds the memory of a long batch)
AMPLITUDE_FLOOR = 1e-3  # relative to the mean amplitude of the window, before the log


def saliency_scores(rows: np.ndarray, tail: int, slope: int, q: int, z: int, scale: float,
                    extrapolate: str = "last") -> np.ndarray:
    """Scores of the newest (last) value of each row of `rows` (shape `(k, window)`)."""
    w = rows.shape[1]
    saliency = saliency_map(rows, tail, slope, q, extrapolate)
    current = saliency[:, w - 1]
    local = local_saliency(saliency, w, z)
    ratio = np.divide(current - local, local, out=np.zeros(len(local)), where=local > 0.0)
    ratio = np.maximum(ratio, 0.0)
    scores: np.ndarray = ratio / (ratio + scale)
    return scores


def local_saliency(saliency: np.ndarray, window: int, z: int) -> np.ndarray:
    """Mean saliency of the `z` values before the newest one (at `window - 1`)."""
    local: np.ndarray = saliency[:, window - 1 - z : window - 1].mean(axis=1)
    return local


def saliency_map(rows: np.ndarray, tail: int, slope: int, q: int,
                 extrapolate: str = "last") -> np.ndarray:
    """Saliency of each row of `rows` extended by its `tail` estimated points, shape
    `(k, window + tail)`; all zeros for a row with no amplitude (a constant window).

    Every step is elementwise or works along one row, so a row gets the same bits whatever
    batch it comes in.
    """
    rows = np.ascontiguousarray(rows, dtype=float)
    k, w = rows.shape
    newest = rows[:, -1]
    if extrapolate == "gradient":
        gradient = np.zeros(k)
        for i in range(1, slope + 1):
            gradient += (newest - rows[:, w - 1 - i]) / i
        estimate = rows[:, w - slope] + gradient  # x_{n-slope+1} + slope * mean gradient
    else:
        estimate = newest
    n = w + tail
    ext = np.empty((k, n))
    ext[:, :w] = rows
    ext[:, w:] = estimate[:, None]
    # scaling a window changes no score; bringing it to [-1, 1] (before and after removing the
    # mean) keeps its sums and amplitudes away from overflow and underflow
    ext = _unit(ext)
    ext = _unit(ext - ext.mean(axis=1, keepdims=True))

    spectrum = np.fft.rfft(ext, axis=1)
    amplitude = np.abs(spectrum)
    amplitude[:, 0] = 0.0  # the DC bin: only the level, removed above
    typical = amplitude[:, 1:].mean(axis=1)
    floor = np.where(typical > 0.0, typical, 1.0) * AMPLITUDE_FLOOR
    log_amp = np.log(np.maximum(amplitude, floor[:, None]))
    residual = log_amp - _spectral_average(log_amp, n, q)
    phase = np.divide(spectrum, amplitude, out=np.zeros_like(spectrum), where=amplitude > 0.0)
    saliency: np.ndarray = np.abs(np.fft.irfft(np.exp(residual) * phase, n=n, axis=1))
    return saliency


def _unit(rows: np.ndarray) -> np.ndarray:
    """Each row divided by its largest magnitude (a row of zeros stays zeros)."""
    top = np.abs(rows).max(axis=1, keepdims=True)
    return np.divide(rows, top, out=np.zeros_like(rows), where=top > 0.0)


def _spectral_average(log_amp: np.ndarray, n: int, q: int) -> np.ndarray:
    """Moving average over `q` frequencies of the full (periodic, mirror-symmetric) spectrum
    whose non-negative half is `log_amp`, leaving the DC bin out of every average."""
    k, bins = log_amp.shape
    half = q // 2
    # index of each padded position in the half spectrum: reflect at DC and at the top bin
    # (the top bin is Nyquist for an even length, repeated once for an odd one)
    full = np.mod(np.arange(-half, bins + q - 1 - half), n)
    idx = np.minimum(full, n - full)
    weight = (idx != 0).astype(float)
    values = log_amp[:, idx] * weight
    total = np.zeros((k, bins))
    count = np.zeros(bins)
    for s in range(q):
        total += values[:, s : s + bins]
        count += weight[s : s + bins]
    return total / np.maximum(count, 1.0)


class SpectralResidual:
    """Saliency of the newest value in the spectral residual of its sliding window."""

    name = "sr"

    def __init__(self, window: int = 256, tail: int = 5, extrapolate: Extrapolate = "last",
                 slope: int = 5, q: int = 3, z: int = 21, scale: float = 3.0,
                 warmup: int = 0) -> None:
        if window < 8:
            raise ValueError("window must be >= 8")
        if tail < 1:
            raise ValueError("tail must be >= 1")
        if extrapolate not in ("last", "gradient"):
            raise ValueError("extrapolate must be 'last' or 'gradient'")
        if not 1 <= slope < window:
            raise ValueError("slope must be >= 1 and < window")
        if q < 1:
            raise ValueError("q must be >= 1")
        if not 1 <= z < window:
            raise ValueError("z must be >= 1 and < window")
        if not scale > 0.0:
            raise ValueError("scale must be > 0")
        if warmup < 0:
            raise ValueError("warmup must be >= 0")
        self.window, self.tail, self.slope, self.q, self.z = window, tail, slope, q, z
        self.extrapolate: Extrapolate = extrapolate
        self.scale = float(scale)
        self.warmup = warmup
        self.recent: list[float] = []  # the last `window - 1` learnt values
        self.seen = 0

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return saliency_scores(rows, self.tail, self.slope, self.q, self.z, self.scale,
                               self.extrapolate)

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x) or len(self.recent) < self.window - 1 or self.seen < self.warmup:
            return 0.0
        row = np.asarray([[*self.recent, x]], dtype=float)
        return float(self._score_rows(row)[0])

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        self.recent.append(float(x))
        if len(self.recent) > self.window - 1:
            del self.recent[0]
        self.seen += 1

    def score_many(self, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Score then learn each value of the batch, as the `score_one`/`learn_one` loop."""
        xs = np.asarray(xs, dtype=float)
        out = np.zeros(len(xs))
        good = np.isfinite(xs)
        values = xs[good]
        if len(values) == 0:
            return out
        held = len(self.recent)
        buf = np.concatenate([np.asarray(self.recent, dtype=float), values])
        # kept value j sits at buf[held + j]; it is scored once `window - 1` values precede it
        # and `warmup` values were learnt before it
        first = max(self.window - 1 - held, self.warmup - self.seen, 0)
        kept = np.zeros(len(values))
        if first < len(values):
            windows = np.lib.stride_tricks.sliding_window_view(buf, self.window)
            start = held + first - self.window + 1
            for lo in range(first, len(values), CHUNK):
                hi = min(lo + CHUNK, len(values))
                kept[lo:hi] = self._score_rows(windows[start + lo - first : start + hi - first])
        out[good] = kept
        self.recent = buf[max(len(buf) - (self.window - 1), 0) :].tolist()
        self.seen += len(values)
        return out

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "window": self.window, "tail": self.tail,
                "extrapolate": self.extrapolate, "slope": self.slope, "q": self.q, "z": self.z,
                "scale": self.scale, "warmup": self.warmup, "recent": list(self.recent),
                "seen": self.seen}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> SpectralResidual:
        d = cls(int(s["window"]), int(s["tail"]), s["extrapolate"], int(s["slope"]),
                int(s["q"]), int(s["z"]), float(s["scale"]), int(s["warmup"]))
        d.recent = [float(x) for x in s["recent"]]
        d.seen = int(s["seen"])
        return d


register("sr", SpectralResidual)
