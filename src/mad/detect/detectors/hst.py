"""Half-space trees over shingles (windows of the last `shingle` values), in numpy.

Each tree cuts a randomly perturbed unit cube in halves, `height` times, on random features.
Nodes count how many of the last `window` shingles (reference mass) fell in them; a shingle
that lands in a sparsely visited region scores high. Values are min-max scaled by the range
seen so far, so a level never seen before falls at the edge of the space. The anomaly score is
`1 - mass / max_mass`, averaged over trees; the first `window` shingles are only learnt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mad.detect.detectors.base import is_bad
from mad.detect.detectors.registry import register


class HalfSpaceTrees:
    """Streaming half-space trees (reference window swapped every `window` points)."""

    name = "hst"

    def __init__(self, shingle: int = 8, trees: int = 25, height: int = 8, window: int = 250,
                 seed: int = 7) -> None:
        self.shingle, self.trees, self.height, self.window = shingle, trees, height, window
        self.seed = seed
        rng = np.random.default_rng(seed)
        nodes = 2 ** (height + 1) - 1
        inner = 2**height - 1
        self.dim = rng.integers(0, shingle, size=(trees, inner))
        lo = np.zeros((trees, nodes, shingle))
        hi = np.ones((trees, nodes, shingle))
        s = rng.random((trees, shingle))
        half = 2.0 * np.maximum(s, 1.0 - s)
        lo[:, 0, :], hi[:, 0, :] = s - half, s + half
        self.split = np.zeros((trees, inner))
        for node in range(inner):
            for k in range(trees):
                q = self.dim[k, node]
                mid = (lo[k, node, q] + hi[k, node, q]) / 2.0
                self.split[k, node] = mid
                for child, side in ((2 * node + 1, "lo"), (2 * node + 2, "hi")):
                    lo[k, child], hi[k, child] = lo[k, node], hi[k, node]
                    if side == "lo":
                        hi[k, child, q] = mid
                    else:
                        lo[k, child, q] = mid
        self.ref = np.zeros((trees, nodes))
        self.latest = np.zeros((trees, nodes))
        self.recent: list[float] = []
        self.lo_seen: float | None = None
        self.hi_seen: float | None = None
        self.count = 0
        self.swaps = 0

    def _features(self, x: float) -> np.ndarray | None:
        if len(self.recent) < self.shingle - 1 or self.lo_seen is None or self.hi_seen is None:
            return None
        vals = np.asarray([*self.recent[len(self.recent) - self.shingle + 1 :], x])
        span = max(self.hi_seen - self.lo_seen, 1e-9 * (1.0 + abs(self.hi_seen)))
        return (vals - self.lo_seen) / span

    def _path(self, f: np.ndarray) -> np.ndarray:
        """Node index per tree at each depth, shape (height + 1, trees)."""
        rows = np.arange(self.trees)
        node = np.zeros(self.trees, dtype=np.int64)
        path = [node]
        for _ in range(self.height):
            go_hi = f[self.dim[rows, node]] >= self.split[rows, node]
            node = 2 * node + 1 + go_hi
            path.append(node)
        return np.stack(path)

    def score_one(self, x: float, t: float) -> float:
        if is_bad(x) or self.swaps == 0:
            return 0.0
        f = self._features(x)
        if f is None:
            return 0.0
        path = self._path(f)
        rows = np.arange(self.trees)
        mass = self.ref[rows, path[-1]] * 2.0**self.height
        return float(np.clip(1.0 - mass.mean() / (self.window * 2.0**self.height), 0.0, 1.0))

    def learn_one(self, x: float, t: float) -> None:
        if is_bad(x):
            return
        f = self._features(x)
        self.lo_seen = x if self.lo_seen is None else min(self.lo_seen, x)
        self.hi_seen = x if self.hi_seen is None else max(self.hi_seen, x)
        self.recent.append(x)
        if len(self.recent) > self.shingle:
            del self.recent[0]
        if f is None:
            return
        path = self._path(f)
        rows = np.arange(self.trees)
        for depth in range(self.height + 1):
            self.latest[rows, path[depth]] += 1.0
        self.count += 1
        if self.count % self.window == 0:
            self.ref, self.latest = self.latest, np.zeros_like(self.latest)
            self.swaps += 1

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "shingle": self.shingle, "trees": self.trees,
                "height": self.height, "window": self.window, "seed": self.seed,
                "ref": self.ref.tolist(), "latest": self.latest.tolist(),
                "recent": list(self.recent), "lo_seen": self.lo_seen, "hi_seen": self.hi_seen,
                "count": self.count, "swaps": self.swaps}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> HalfSpaceTrees:
        d = cls(int(s["shingle"]), int(s["trees"]), int(s["height"]), int(s["window"]),
                int(s["seed"]))
        d.ref = np.asarray(s["ref"], dtype=float)
        d.latest = np.asarray(s["latest"], dtype=float)
        d.recent = [float(x) for x in s["recent"]]
        d.lo_seen = None if s["lo_seen"] is None else float(s["lo_seen"])
        d.hi_seen = None if s["hi_seen"] is None else float(s["hi_seen"])
        d.count, d.swaps = int(s["count"]), int(s["swaps"])
        return d


register("hst", HalfSpaceTrees)
