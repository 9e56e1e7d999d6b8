"""NAB v1.1 scoring: sweep scores per row, corpus-wide threshold optimisation, normalisation.

Pure functions over arrays; reading files lives in `mad.bench.nab_io`. The rules follow the
Numenta Anomaly Benchmark:

- the first 15% of each series (at most 750 rows) is probation and is not scored;
- a row inside a window is worth `tp_weight * S(x) / S(-1)`, where `S(x) = 2 / (1 + e^(5x)) - 1`
  and `x = -(right_index - i + 1) / width` runs from -1 at the window's left edge towards 0 at
  its right edge; only the best (that is, the earliest) detection of a window counts;
- a window with no detection costs `fn_weight`;
- a row outside any window costs `fp_weight * S(d)`, `d = |prev_right - i| / (prev_width - 1)`
  measured from the closest preceding window, `S(d) = -1` when `d >= 3` or there is none;
- one threshold is shared by the corpus (a detection is `score >= threshold`), the one that
  maximises the total;
- `normalised = 100 * (raw - null) / (perfect - null)`: `null` is the total with no detection,
  `perfect` is `tp_weight` times the number of windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = 5000
NO_WINDOW = -1
PROBATION = -2


@dataclass(frozen=True)
class Profile:
    """The weights of one NAB application profile."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass(frozen=True)
class Swept:
    """One series after the sweep: its scores, each row's weighted value and window id."""

    scores: np.ndarray  # float, anomaly score per row
    values: np.ndarray  # float, what a detection on this row would add to the total
    window: np.ndarray  # int, global window id, NO_WINDOW or PROBATION


@dataclass(frozen=True)
class ProfileResult:
    """The corpus result of one profile at its optimal threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float


def scaled_sigmoid(x: float) -> float:
    """NAB's weight of a relative position: about 0.987 at -1, 0 at 0, -1 from 3 on."""
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the head of a series that are not scored."""
    return int(min(math.floor(percent * rows), percent * PROBATION_CAP_ROWS))


def window_bounds(
    timestamps: np.ndarray, windows: Sequence[tuple[np.datetime64, np.datetime64]]
) -> list[tuple[int, int]]:
    """Row index of the first and last row inside each window (windows with no row dropped)."""
    bounds = []
    for start, end in windows:
        left = int(np.searchsorted(timestamps, start, side="left"))
        right = int(np.searchsorted(timestamps, end, side="right")) - 1
        if left <= right:
            bounds.append((left, right))
    return bounds


def sweep(
    timestamps: np.ndarray,
    scores: np.ndarray,
    windows: Sequence[tuple[np.datetime64, np.datetime64]],
    profile: Profile,
    first_window_id: int = 0,
) -> Swept:
    """Weigh every row of one series as if it were a detection (NAB's sweep)."""
    n = len(scores)
    if len(timestamps) != n:
        raise ValueError("timestamps and scores differ in length")
    values = np.empty(n, dtype=float)
    window = np.full(n, NO_WINDOW, dtype=np.int64)
    max_tp = scaled_sigmoid(-1.0)
    bounds = window_bounds(timestamps, windows)
    prev_right: int | None = None
    prev_width = 0
    b = 0
    i = 0
    while i < n:
        if b < len(bounds) and i == bounds[b][0]:
            left, right = bounds[b]
            width = right - left + 1
            for j in range(left, right + 1):
                values[j] = scaled_sigmoid(-(right - j + 1) / width) * profile.tp_weight / max_tp
                window[j] = first_window_id + b
            prev_right, prev_width = right, width
            b += 1
            i = right + 1
            continue
        if prev_right is None or prev_width <= 1:
            position = 3.0
        else:
            position = abs(prev_right - i) / (prev_width - 1)
        values[i] = scaled_sigmoid(position) * profile.fp_weight
        i += 1
    window[: probation_length(n)] = PROBATION
    return Swept(np.asarray(scores, dtype=float), values, window)


def threshold_curve(series: Sequence[Swept], profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Total raw score at every candidate threshold, highest threshold first.

    The first candidate lies above every score (no detection at all); each following one is a
    distinct score value, and its total counts every scored row at or above it.
    """
    scores = np.concatenate([s.scores for s in series]) if series else np.empty(0)
    values = np.concatenate([s.values for s in series]) if series else np.empty(0)
    window = np.concatenate([s.window for s in series]) if series else np.empty(0, np.int64)
    keep = window != PROBATION
    scores, values, window = scores[keep], values[keep], window[keep]
    window_ids = np.unique(window[window >= 0])
    best = {int(w): -profile.fn_weight for w in window_ids}
    total = -profile.fn_weight * len(window_ids)
    order = np.argsort(-scores, kind="stable")
    top = float(scores[order[0]]) + 1.0 if len(order) else 1.1
    thresholds = [max(1.1, top)]
    totals = [total]
    for k in order:
        s = float(scores[k])
        if s != thresholds[-1]:
            thresholds.append(s)
            totals.append(total)
        w = int(window[k])
        if w == NO_WINDOW:
            total += float(values[k])
        elif values[k] > best[w]:
            total += float(values[k]) - best[w]
            best[w] = float(values[k])
        totals[-1] = total
    return np.asarray(thresholds), np.asarray(totals)


def score_corpus(
    corpus: Mapping[str, tuple[np.ndarray, np.ndarray]],
    windows: Mapping[str, Sequence[tuple[np.datetime64, np.datetime64]]],
    profiles: Sequence[Profile] = PROFILES,
) -> list[ProfileResult]:
    """Score a corpus `{name: (timestamps, scores)}` against its windows, per profile."""
    results = []
    n_windows = sum(len(windows.get(name, ())) for name in corpus)
    for profile in profiles:
        swept = []
        next_id = 0
        for name, (timestamps, scores) in corpus.items():
            wins = windows.get(name, ())
            swept.append(sweep(timestamps, scores, wins, profile, next_id))
            next_id += len(wins)
        thresholds, totals = threshold_curve(swept, profile)
        best = int(np.argmax(totals))
        null = float(totals[0])
        perfect = profile.tp_weight * n_windows
        denom = perfect - null
        score = 100.0 * (float(totals[best]) - null) / denom if denom else 0.0
        results.append(
            ProfileResult(profile.name, float(thresholds[best]), float(totals[best]), null,
                          perfect, score)
        )
    return results
