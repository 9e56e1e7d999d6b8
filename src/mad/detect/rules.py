"""Threshold rules and SLOs over aggregate windows, with consecutive-window counters.

Pure logic. A rule (`settings.detect.rules`) reads one stat of one series, e.g.
`error_rate avg > 0.05 for 3 windows`; an SLO (`settings.detect.slo`) is a rule per service,
`<slo.series> p99 > p99_ms[service] for slo.windows windows`, named `slo-p99-<service>`.

A rule fires on the `windows`-th consecutive breaching window and on every further breaching
window after it (one anomaly record per window in breach, like the detectors; the incident
tracker turns them into one alert). "Consecutive" means adjacent window starts: a window
that does not breach, whose value is missing or NaN, or a gap (no row for a window, e.g. no
events that minute) starts the count again, so a breach is only reported for an unbroken run
of measured windows.

A rule anomaly has `detectors=("rule:<name>",)`, score 1.0, `expected` = the threshold and a
band collapsed onto the threshold (`lower = upper = threshold`): the threshold is the limit
of normal, there is no baseline. The counters are a JSON-able dict per series.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mad.config import DetectSettings
from mad.detect.model import Anomaly, Severity

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
WINDOW_S = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}


@dataclass(frozen=True)
class Rule:
    name: str
    series: str
    stat: str
    op: str
    threshold: float
    windows: int
    services: tuple[str, ...]  # empty: every service
    severity: Severity

    def applies(self, service: str, series: str) -> bool:
        return series == self.series and (not self.services or service in self.services)

    def breached(self, value: float) -> bool:
        """True when `value` is measured and on the wrong side of the threshold."""
        return math.isfinite(value) and OPS[self.op](value, self.threshold)


def all_rules(settings: DetectSettings) -> list[Rule]:
    """The configured rules, then one SLO rule per service with a p99 objective."""
    rules = [Rule(r.name, r.series, r.stat, r.op, float(r.threshold), r.windows,
                  tuple(r.services), r.severity) for r in settings.rules]
    slo = settings.slo
    for service, limit in sorted(slo.p99_ms.items()):
        rules.append(Rule(f"slo-p99-{service}", slo.series, "p99", ">", float(limit),
                          slo.windows, (service,), "critical"))
    return rules


def rules_for(settings: DetectSettings, service: str, series: str) -> list[Rule]:
    """The rules that read `service/series`."""
    return [r for r in all_rules(settings) if r.applies(service, series)]


class RuleCounters:
    """Consecutive breaching windows per rule of one series: `{name: {"run": n, "last": t}}`
    with `last` the epoch seconds of the latest breaching window."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        self.runs: dict[str, dict[str, Any]] = {
            str(k): {"run": int(v.get("run", 0)), "last": v.get("last")}
            for k, v in (state or {}).items()
        }

    def evaluate(self, rules: list[Rule], window: str, window_start: datetime, service: str,
                 series: str, values: Mapping[str, float]) -> list[Anomaly]:
        """Count one window (windows in time order, each once); return the rules in breach."""
        step = WINDOW_S.get(window, 60.0)
        t = window_start.timestamp()
        found = []
        for rule in rules:
            value = float(values.get(rule.stat, math.nan))
            counter = self.runs.setdefault(rule.name, {"run": 0, "last": None})
            if not rule.breached(value):
                counter.update(run=0, last=None)
                continue
            last = counter["last"]
            adjacent = last is not None and abs(t - float(last) - step) < 1e-6
            counter.update(run=counter["run"] + 1 if adjacent else 1, last=t)
            if counter["run"] >= rule.windows:
                found.append(Anomaly(
                    service=service, series=series, stat=rule.stat, window=window,
                    window_start=window_start, score=1.0, severity=rule.severity,
                    observed=value, expected=rule.threshold, lower=rule.threshold,
                    upper=rule.threshold, detectors=(f"rule:{rule.name}",)))
        return found

    def state(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.runs.items()}
