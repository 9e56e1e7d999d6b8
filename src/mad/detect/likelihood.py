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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

LOG_FLOOR = math.log(1e-10)


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
            arr = np.asarray(self.averages)
            self.mean = float(arr.mean())
            self.std = max(float(arr.std()), self.min_std)

    def update(self, raw: float) -> float:
        """Score one raw score, then learn it."""
        score = self.score(raw)
        self.learn(raw)
        return score

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
