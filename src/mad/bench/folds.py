"""Leave-one-category-out on a NAB corpus: what a configuration scores on series it was not
chosen on.

The all-in NAB score picks its threshold (and, when several configurations are compared, the
configuration) on the very series it then scores. Here each category is held out in turn:
the configuration and the corpus threshold are chosen on the other categories alone, the
held-out category is scored with them, and the folds are reported one by one and pooled
(the held-out raw totals summed and normalised like one corpus), which is the figure to
improve. A category without windows (NAB's `artificialNoAnomaly`) has no normalised score;
its false positives at the chosen threshold count in the pooled total.

Pure functions over the scores `run_nab` produced; no files are read here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mad.bench import nab

Corpus = Mapping[str, tuple[np.ndarray, np.ndarray]]  # name -> (timestamps, scores)
Windows = Mapping[str, Sequence[tuple[np.datetime64, np.datetime64]]]


@dataclass(frozen=True)
class Fold:
    """One held-out category."""

    category: str
    windows: int
    candidate: int  # index of the configuration chosen on the other categories
    threshold: float  # the corpus threshold chosen on the other categories
    train: float  # normalised score of the other categories at that threshold
    raw: float  # held-out raw total at that threshold
    null: float
    perfect: float
    false_positives: int  # detections outside every window in the held-out category

    @property
    def score(self) -> float | None:
        """Normalised held-out score; None for a category without windows."""
        denom = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / denom if denom else None


@dataclass(frozen=True)
class FoldReport:
    """Every fold of one profile, and the pooled held-out score."""

    profile: str
    folds: list[Fold]

    @property
    def pooled(self) -> float:
        raw = sum(f.raw for f in self.folds)
        null = sum(f.null for f in self.folds)
        perfect = sum(f.perfect for f in self.folds)
        return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0

    @property
    def mean(self) -> float:
        """Mean of the held-out scores of the categories that have windows."""
        scores = [s for f in self.folds if (s := f.score) is not None]
        return float(np.mean(scores)) if scores else 0.0


def category(name: str) -> str:
    """`realTraffic/speed_7578.csv` -> `realTraffic`."""
    return name.split("/", 1)[0]


def total_at(series: Sequence[nab.Swept], profile: nab.Profile, threshold: float) -> float:
    """Raw NAB total of swept series when every row scoring `threshold` or more is a
    detection (the same sum `nab.threshold_curve` gives at that candidate)."""
    total = 0.0
    for s in series:
        scored = s.window != nab.PROBATION
        hit = scored & (s.scores >= threshold)
        total += float(s.values[hit & (s.window == nab.NO_WINDOW)].sum())
        for w in np.unique(s.window[scored & (s.window >= 0)]):
            found = hit & (s.window == w)
            total += float(s.values[found].max()) if found.any() else -profile.fn_weight
    return total


def false_positives(series: Sequence[nab.Swept], threshold: float) -> int:
    """Detections outside every window (probation excluded)."""
    return int(sum(((s.scores >= threshold) & (s.window == nab.NO_WINDOW)).sum()
                   for s in series))


def _swept(corpus: Corpus, windows: Windows, names: Sequence[str],
           profile: nab.Profile) -> list[nab.Swept]:
    out = []
    next_id = 0
    for name in names:
        stamps, scores = corpus[name]
        wins = windows.get(name, ())
        out.append(nab.sweep(stamps, scores, wins, profile, next_id))
        next_id += len(wins)
    return out


def _best(swept: Sequence[nab.Swept], profile: nab.Profile,
          n_windows: int) -> tuple[float, float]:
    """(normalised score, threshold) at the threshold that maximises the total."""
    thresholds, totals = nab.threshold_curve(swept, profile)
    k = int(np.argmax(totals))
    null, perfect = float(totals[0]), profile.tp_weight * n_windows
    score = 100.0 * (float(totals[k]) - null) / (perfect - null) if perfect != null else 0.0
    return score, float(thresholds[k])


def leave_one_category_out(candidates: Sequence[Corpus], windows: Windows,
                           profiles: Sequence[nab.Profile] = nab.PROFILES) -> list[FoldReport]:
    """For each profile and each category: choose the candidate and threshold on the other
    categories, score the held-out one with them."""
    if not candidates:
        raise ValueError("no candidate to score")
    names = sorted(candidates[0])
    if any(sorted(c) != names for c in candidates):
        raise ValueError("every candidate must score the same series")
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(category(name), []).append(name)
    if len(groups) < 2:
        raise ValueError("leave-one-category-out needs at least two categories")
    reports = []
    for profile in profiles:
        folds = []
        for held, held_names in groups.items():
            train_names = [n for n in names if category(n) != held]
            train_windows = sum(len(windows.get(n, ())) for n in train_names)
            best: tuple[float, float, int] | None = None
            for k, corpus in enumerate(candidates):
                score, threshold = _best(_swept(corpus, windows, train_names, profile),
                                         profile, train_windows)
                if best is None or score > best[0]:
                    best = (score, threshold, k)
            assert best is not None
            train, threshold, k = best
            test = _swept(candidates[k], windows, held_names, profile)
            n_windows = sum(len(windows.get(n, ())) for n in held_names)
            null = -profile.fn_weight * sum(
                len(np.unique(s.window[s.window >= 0])) for s in test)
            folds.append(Fold(held, n_windows, k, threshold, train,
                              total_at(test, profile, threshold), null,
                              profile.tp_weight * n_windows, false_positives(test, threshold)))
        reports.append(FoldReport(profile.name, folds))
    return reports
