"""Streaming scoring of one aggregate series: detector + decision engine + baseline + rules.

`SeriesScorer` holds everything detection keeps about one `service/series` of one window size:
for every scored stat (`settings.detect.stats`, e.g. `avg`) the configured detector, a
`Decider` and a rolling baseline, plus the consecutive-window counters of the rules that apply
to the series. `process(row)` scores one aggregate window and returns its anomalies;
`state()` is plain JSON, so the pipeline can store it and a restart resumes without
re-warming (restoring mid-series gives the scores of a scorer that never stopped).

One anomaly record per anomalous window while the Decider is open: it opens at `threshold`
and stays open while the score is at least `clear`. `md-anomalies` then shows every window
that was out of line; the incident tracker groups them, and alerts go out per incident
change, so a long anomaly does not page once per window.

The expected value and its band come from the scorer's own rolling baseline (median and
1.4826 x MAD of the last `BASELINE` finite values, band = median +- 3 sigma), the same
robust statistics the ETL's outlier score uses; a seasonal baseline would need every
detector to expose one, and the ensemble's members disagree on what "expected" means.
Severity is by size, not score (scores saturate: the range member always says 1.0): an
anomaly `critical_sigmas` or more robust sigmas from the median is critical, else a warning.

Each anomaly carries its `onset`, when the series began to leave its normal band
(`mad.detect.origin.change_onset`, looking back over the baseline's values from the first
window of the anomaly; the same onset for every window while the Decider stays open). A rule
anomaly's onset is the start of its breaching run, or earlier when the scored values of its
stat left their band before. The incident tracker names the origin from them.

Bad values (NaN, inf, a missing column) are neither scored nor learnt and do not move the
Decider; the scorer counts them (`bad`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mad.config import DetectSettings
from mad.detect.detectors.base import Detector, score_series
from mad.detect.detectors.registry import restore
from mad.detect.model import Anomaly
from mad.detect.origin import change_onset
from mad.detect.rules import WINDOW_S, Rule, RuleCounters, rules_for
from mad.detect.vote import Decider

log = logging.getLogger(__name__)

BASELINE = 30  # values in the rolling baseline (as the ETL's outlier score)
BAND_SIGMAS = 3.0
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class WindowRow:
    """One aggregate window of one series: `values` maps a stat (avg, p99, ...) to its value
    (NaN when missing)."""

    service: str
    series: str
    window_start: datetime  # UTC
    values: Mapping[str, float]


def baseline_band(history: list[float]) -> tuple[float, float, float]:
    """(expected, lower, upper) from the rolling baseline; NaNs when it is empty."""
    if not history:
        nan = float("nan")
        return nan, nan, nan
    arr = np.asarray(history, dtype=float)
    med = float(np.median(arr))
    sigma = float(np.median(np.abs(arr - med))) * MAD_TO_SIGMA
    return med, med - BAND_SIGMAS * sigma, med + BAND_SIGMAS * sigma


@dataclass(frozen=True)
class Scored:
    """A batch of one stat's scores, and for a vote each member's weighted score per point."""

    scores: np.ndarray
    weighted: np.ndarray | None  # members x points, or None for a single detector
    members: list[str]
    detector: str

    def names_at(self, i: int, floor: float) -> tuple[str, ...]:
        """Which members pushed point `i`'s score to `floor` or above; a detector without
        members names itself."""
        if self.weighted is None:
            return (self.detector,)
        names = [m for m, w in zip(self.members, self.weighted[:, i], strict=True)
                 if float(w) >= floor]
        return tuple(dict.fromkeys(names)) or (self.detector,)


class RecentValues:
    """The last `BASELINE` finite values of one stat and their window starts (epoch seconds),
    oldest first: the rolling baseline, and what a change onset is looked for in."""

    def __init__(self, values: list[float] | None = None,
                 times: list[float] | None = None) -> None:
        self.values = list(values or [])
        self.times = list(times or [])[-len(self.values):] if self.values else []

    def add(self, x: float, t: float) -> None:
        self.values.append(x)
        self.times.append(t)
        if len(self.values) > BASELINE:
            del self.values[0]
        del self.times[:max(0, len(self.times) - len(self.values))]

    def before(self, t: float, step: float) -> tuple[list[float], list[float]]:
        """The values before `t` and their window starts; values saved without their times
        (by an older version) are taken as consecutive windows."""
        values, times = list(self.values), list(self.times)
        missing = len(values) - len(times)
        if missing > 0:
            end = times[0] if times else t
            times = [end - (missing - i) * step for i in range(missing)] + times
        cut = sum(1 for when in times if when < t)
        return values[:cut], times[:cut]

    def onset(self, x: float, t: float, step: float) -> float:
        """When the change seen at `t` (value `x`) began (`mad.detect.origin.change_onset`)."""
        values, times = self.before(t, step)
        return change_onset(values, times, t, x, step)

    def state(self) -> dict[str, list[float]]:
        return {"values": list(self.values), "times": list(self.times)}


class StatScorer:
    """The detector, Decider and baseline of one stat of one series, and the onset of the
    anomaly open now (epoch seconds; None while there is none)."""

    def __init__(self, detector: Detector, decider: Decider,
                 history: list[float] | None = None, times: list[float] | None = None,
                 onset: float | None = None) -> None:
        self.detector = detector
        self.decider = decider
        self.baseline = RecentValues(history, times)
        self.onset = onset

    @property
    def history(self) -> list[float]:
        return self.baseline.values

    def score_batch(self, xs: np.ndarray, ts: np.ndarray) -> Scored:
        """Score then learn a batch of values (NaN ones are skipped by the detector)."""
        detail = getattr(self.detector, "score_detail", None)
        if detail is not None:
            scores, weighted = detail(xs, ts)
            return Scored(scores, weighted, list(self.detector.member_names()),  # type: ignore[attr-defined]
                          self.detector.name)
        return Scored(score_series(self.detector, ts, xs), None, [], self.detector.name)

    def decide(self, score: float) -> bool:
        """Feed the Decider one score: True while an anomaly is open."""
        self.decider.step(score)
        return self.decider.open

    def learn_baseline(self, x: float, t: float) -> None:
        self.baseline.add(x, t)

    def state(self) -> dict[str, Any]:
        return {"detector": self.detector.state(), "decider": self.decider.state(),
                "history": list(self.baseline.values), "times": list(self.baseline.times),
                "onset": self.onset}


class SeriesScorer:
    """Scores the windows of one `service/series` in order; see the module doc."""

    def __init__(self, settings: DetectSettings, service: str, series: str,
                 state: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.service = service
        self.series = series
        given = settings.detector.options().model_dump(mode="json", exclude_unset=True)
        self.spec = {"detector": settings.detector.backend, "params": given}
        self.rules: list[Rule] = rules_for(settings, service, series)
        state = state or {}
        same_spec = state.get("spec") == self.spec
        if state and not same_spec:
            log.warning("%s/%s: detector settings changed; its detectors start warming up "
                        "again", service, series)
        saved = state.get("stats", {}) if same_spec else {}
        self.stats = {stat: self._restore(saved.get(stat)) for stat in settings.stats}
        self.counters = RuleCounters(dict(state.get("rules", {})))
        self.points = int(state.get("points", 0))
        self.bad = int(state.get("bad", 0))
        self.rule_onsets: dict[str, float] = {  # rule name -> onset of its breach now
            str(k): float(v) for k, v in dict(state.get("rule_onsets", {})).items()}
        saved_values = dict(state.get("rule_values", {}))
        self.rule_values: dict[str, RecentValues] = {  # the rules' stats not scored
            stat: RecentValues([float(v) for v in saved_values.get(stat, {}).get("values", [])],
                               [float(v) for v in saved_values.get(stat, {}).get("times", [])])
            for stat in sorted({r.stat for r in self.rules} - set(self.stats))}

    def _restore(self, saved: Mapping[str, Any] | None) -> StatScorer:
        cfg = self.settings
        if saved is None:
            return StatScorer(cfg.detector.create(),
                              Decider(cfg.threshold, cfg.clear, cfg.cooldown))
        old = Decider.from_state(dict(saved["decider"]))
        decider = Decider(cfg.threshold, cfg.clear, cfg.cooldown, old.open, old.quiet_left)
        onset = saved.get("onset")
        return StatScorer(restore(dict(saved["detector"])), decider,
                          [float(v) for v in saved.get("history", [])],
                          [float(v) for v in saved.get("times", [])],
                          None if onset is None else float(onset))

    def process(self, row: WindowRow) -> list[Anomaly]:
        """Score one window (the caller passes windows in time order, each once)."""
        return self.process_many([row])[0]

    def process_many(self, rows: Sequence[WindowRow]) -> list[list[Anomaly]]:
        """Score windows in time order, each once, with one detector batch per stat: the
        anomalies of each row, as `process` called on each row in turn gives them."""
        ts = np.array([row.window_start.timestamp() for row in rows], dtype=float)
        values = {stat: np.array([float(row.values.get(stat, math.nan)) for row in rows],
                                 dtype=float) for stat in self.stats}
        scored = {stat: scorer.score_batch(values[stat], ts)
                  for stat, scorer in self.stats.items()}
        return [self._apply(row, float(ts[i]), {stat: (float(values[stat][i]), scored[stat], i)
                                                 for stat in self.stats})
                for i, row in enumerate(rows)]

    def _apply(self, row: WindowRow, t: float,
               at: Mapping[str, tuple[float, Scored, int]]) -> list[Anomaly]:
        """Decide, record and learn the baselines and rules of one scored window."""
        step = WINDOW_S.get(self.settings.window, 60.0)
        self.points += 1
        found: list[Anomaly] = []
        for stat, scorer in self.stats.items():
            x, scored, i = at[stat]
            if not math.isfinite(x):
                self.bad += 1
                continue
            score = float(scored.scores[i])
            if not scorer.decide(score):
                scorer.onset = None
            else:
                if scorer.onset is None:
                    scorer.onset = scorer.baseline.onset(x, t, step)
                expected, lower, upper = baseline_band(scorer.history)
                sigmas = abs(x - expected) / max((upper - expected) / BAND_SIGMAS, 1e-12)
                found.append(Anomaly(
                    service=row.service, series=row.series, stat=stat,
                    window=self.settings.window, window_start=row.window_start,
                    score=min(1.0, max(0.0, score)),
                    severity="critical" if sigmas >= self.settings.critical_sigmas
                    else "warning",
                    observed=x, expected=expected, lower=lower, upper=upper,
                    detectors=scored.names_at(i, scorer.decider.clear),
                    onset=_when(scorer.onset)))
            scorer.learn_baseline(x, t)
        fired = self.counters.evaluate(self.rules, self.settings.window, row.window_start,
                                       row.service, row.series, row.values)
        found.extend(self._rule_onsets(fired, t, step))
        for name, recent in self.rule_values.items():
            value = float(row.values.get(name, math.nan))
            if math.isfinite(value):
                recent.add(value, t)
        return found

    def _rule_onsets(self, fired: list[Anomaly], t: float, step: float) -> list[Anomaly]:
        """Rule anomalies with their onset: the start of the breaching run, or earlier when
        the stat's recent values left their band before (kept while the rule fires)."""
        onsets: dict[str, float] = {}
        out = []
        for a in fired:
            name = a.detectors[0].removeprefix("rule:")
            onset = self.rule_onsets.get(name)
            if onset is None:
                run = int(self.counters.runs.get(name, {}).get("run", 1))
                onset = t - max(0, run - 1) * step
                scorer = next((sc for st, sc in self.stats.items() if st == a.stat), None)
                recent = scorer.baseline if scorer is not None else self.rule_values.get(a.stat)
                if recent is not None:
                    onset = min(onset, recent.onset(a.observed, t, step))
            onsets[name] = onset
            out.append(replace(a, onset=_when(onset)))
        self.rule_onsets = onsets
        return out

    def state(self) -> dict[str, Any]:
        return {"spec": self.spec,
                "stats": {stat: s.state() for stat, s in self.stats.items()},
                "rules": self.counters.state(), "points": self.points, "bad": self.bad,
                "rule_onsets": dict(self.rule_onsets),
                "rule_values": {stat: r.state() for stat, r in self.rule_values.items()}}


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
