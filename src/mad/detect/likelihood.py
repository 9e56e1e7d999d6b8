"""Anomaly likelihood: how unusual the recent average of a raw score is, given its history.

Raw detector scores are noisy and their level differs from series to series. This turns them
into one comparable scale: the mean of the last `short` raw scores is compared with the
distribution (mean, standard deviation) of that same moving average over the last `history`
points, re-estimated every `reestimate` points. The tail probability `p` of the current
average becomes `log(p) / log(1e-10)` clipped to [0, 1], so 0.5 means a 1-in-100 000 event.
After a score above `red` (an alert), the following scores are capped at `after_red` until
the likelihood falls back, so one lasting change yields one alert, not many.
The first `learning` points only learn (score 0). Raw scores of exactly 0 that come before the
first non-zero one are the member's own warm-up, not a measurement: they count towards
`learning` but stay out of the distribution (a run of warm-up zeros would drag its mean down and
inflate its spread, hiding anomalies for as long as they stay in the history). Until the first
estimate the distribution is (mean 0, std 1), under which no average of scores in [0, 1] is rare.

`update_many` scores then learns a batch in one compiled loop with the same arithmetic, in the
same order, as `score` and `learn` (the re-estimate of both paths is the same compiled sum).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from mad.detect.detectors import _jit

LOG_FLOOR = math.log(1e-10)
SQRT2 = math.sqrt(2.0)


@njit(cache=True)
def _mean_std(ring: np.ndarray, head: int, n: int) -> tuple[float, float]:
    """Mean and standard deviation of the `n` values of a ring from `head`, oldest first."""
    cap = len(ring)
    total = 0.0
    for i in range(n):
        total += ring[(head + i) % cap]
    mean = total / n
    sq = 0.0
    for i in range(n):
        d = ring[(head + i) % cap] - mean
        sq += d * d
    return mean, math.sqrt(sq / n)


@njit(cache=True)
def _run(raws: np.ndarray, recent: np.ndarray, n_recent: int, ring: np.ndarray, head: int,
         n_ring: int, fl: np.ndarray, learning: int, reestimate: int, min_std: float,
         red: float, after_red: float) -> tuple[np.ndarray, int, int, int]:
    """Score then learn each raw score. `recent[:n_recent]` oldest first; `ring` holds the
    averages from `head`; `fl` = [mean, std, seen, last, started], updated in place."""
    out = np.zeros(len(raws))
    short = len(recent)
    cap = len(ring)
    for i in range(len(raws)):
        raw = raws[i]
        seen = int(fl[2])
        uncapped = 0.0
        if seen + 1 > learning:
            k = min(n_recent, short - 1)
            total = 0.0
            for j in range(n_recent - k, n_recent):
                total += recent[j]
            total += raw
            z = (total / (k + 1) - fl[0]) / fl[1]
            tail = 0.5 * math.erfc(z / SQRT2)
            uncapped = min(1.0, max(0.0, math.log(max(tail, 1e-300)) / LOG_FLOOR))
        capped = fl[3] >= red and uncapped >= red
        out[i] = min(uncapped, after_red) if capped else uncapped
        fl[3] = red if capped else uncapped
        seen += 1
        fl[2] = seen
        if fl[4] == 0.0 and raw == 0.0:
            continue
        fl[4] = 1.0
        n_recent = _jit.push(recent, n_recent, raw)
        total = 0.0
        for j in range(n_recent):
            total += recent[j]
        if n_ring == cap:
            ring[head] = total / n_recent
            head = (head + 1) % cap
        else:
            ring[(head + n_ring) % cap] = total / n_recent
            n_ring += 1
        if seen % reestimate == 0 or seen == learning:
            mean, std = _mean_std(ring, head, n_ring)
            fl[0] = mean
            fl[1] = max(std, min_std)
    return out, n_recent, head, n_ring


class Likelihood:
    """Streaming post-processor of one raw score stream (JSON-able state)."""

    def __init__(self, learning: int = 300, short: int = 10, history: int = 8000,
                 reestimate: int = 100, min_std: float = 0.01, red: float = 0.5,
                 after_red: float = 0.3) -> None:
        self.learning, self.short, self.history = learning, short, history
        self.reestimate, self.min_std = reestimate, min_std
        self.red, self.after_red = red, after_red
        self.recent: list[float] = []
        self.averages: list[float] = []
        self.mean = 0.0
        self.std = 1.0
        self.seen = 0
        self.last = 0.0
        self.started = False

    def _average_with(self, raw: float) -> float:
        window = [*self.recent[len(self.recent) - self.short + 1 :], raw] if self.short > 1 \
            else [raw]
        return sum(window) / len(window)

    def _uncapped(self, raw: float) -> float:
        if self.seen + 1 <= self.learning:
            return 0.0
        z = (self._average_with(raw) - self.mean) / self.std
        tail = 0.5 * math.erfc(z / math.sqrt(2.0))
        return min(1.0, max(0.0, math.log(max(tail, 1e-300)) / LOG_FLOOR))

    def score(self, raw: float) -> float:
        """Likelihood score of the next raw score, without learning it."""
        score = self._uncapped(raw)
        if self.last >= self.red and score >= self.red:
            return min(score, self.after_red)
        return score

    def learn(self, raw: float) -> None:
        """Add one raw score to the history."""
        score = self._uncapped(raw)
        self.last = self.red if self.last >= self.red and score >= self.red else score
        self.seen += 1
        if not self.started and raw == 0.0:
            return
        self.started = True
        self.recent.append(raw)
        if len(self.recent) > self.short:
            del self.recent[0]
        self.averages.append(sum(self.recent) / len(self.recent))
        if len(self.averages) > self.history:
            del self.averages[0]
        if self.seen % self.reestimate == 0 or self.seen == self.learning:
            mean, std = _mean_std(np.asarray(self.averages, dtype=float), 0,
                                  len(self.averages))
            self.mean = float(mean)
            self.std = max(float(std), self.min_std)

    def update(self, raw: float) -> float:
        """Score one raw score, then learn it."""
        score = self.score(raw)
        self.learn(raw)
        return score

    def update_many(self, raws: np.ndarray) -> np.ndarray:
        """`update` over a batch: each raw score scored, then learnt."""
        recent = np.zeros(self.short)
        recent[: len(self.recent)] = self.recent
        ring = np.zeros(self.history)
        ring[: len(self.averages)] = self.averages
        fl = np.array([self.mean, self.std, float(self.seen), self.last,
                       1.0 if self.started else 0.0])
        out, n_recent, head, n_ring = _run(
            np.ascontiguousarray(raws, dtype=float), recent, len(self.recent), ring, 0,
            len(self.averages), fl, self.learning, self.reestimate, self.min_std, self.red,
            self.after_red)
        self.recent = recent[:n_recent].tolist()
        self.averages = np.roll(ring, -head)[:n_ring].tolist() if n_ring == self.history \
            else ring[:n_ring].tolist()
        self.mean, self.std, self.last = float(fl[0]), float(fl[1]), float(fl[3])
        self.seen, self.started = int(fl[2]), bool(fl[4])
        result: np.ndarray = out
        return result

    def state(self) -> dict[str, Any]:
        return {"learning": self.learning, "short": self.short, "history": self.history,
                "reestimate": self.reestimate, "min_std": self.min_std, "red": self.red,
                "after_red": self.after_red, "recent": list(self.recent),
                "averages": list(self.averages), "mean": self.mean, "std": self.std,
                "seen": self.seen, "last": self.last, "started": self.started}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> Likelihood:
        d = cls(int(s["learning"]), int(s["short"]), int(s["history"]), int(s["reestimate"]),
                float(s["min_std"]), float(s["red"]), float(s["after_red"]))
        d.recent = [float(x) for x in s["recent"]]
        d.averages = [float(x) for x in s["averages"]]
        d.mean, d.std = float(s["mean"]), float(s["std"])
        d.seen, d.last = int(s["seen"]), float(s["last"])
        d.started = bool(s.get("started", True))
        return d
