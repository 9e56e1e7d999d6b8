"""Level-shift detector: the median of the last few points against a longer reference window.

The recent window (the point being scored and the `recent - 1` before it) is compared with the
`reference` points before it: `z = (median(recent) - median(ref)) / (1.4826 * MAD(ref))`.
A median ignores a lone spike, so this reacts to shifts of the level that last, and it reacts
as soon as half of the recent window has moved. Needs `reference // 4` points of history.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mad.detect.detectors._stats import MAD_TO_SIGMA, EwStats, median, squash
from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register


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
