"""Threshold rules and SLOs over aggregate windows: consecutive counts, gaps, bad values."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from mad.config import DetectSettings, RuleSettings, SloSettings
from mad.detect.rules import RuleCounters, all_rules, rules_for

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def settings(**extra: object) -> DetectSettings:
    return DetectSettings.model_validate({
        "rules": [{"name": "errors", "series": "error_rate", "threshold": 0.05, "windows": 3}],
        "slo": {"p99_ms": {"payments": 1500.0}, "windows": 2},
        **extra,
    })


def run(values: list[float | None], cfg: DetectSettings | None = None, series: str = "error_rate",
        stat: str = "avg", service: str = "payments", skip: tuple[int, ...] = (),
        counters: RuleCounters | None = None) -> list[int]:
    """Feed one value per minute (None: missing stat; `skip`: no row at all); return the
    minutes that produced a rule anomaly."""
    cfg = cfg or settings()
    rules = rules_for(cfg, service, series)
    counters = counters or RuleCounters()
    fired = []
    for i, value in enumerate(values):
        if i in skip:
            continue
        row = {} if value is None else {stat: value}
        for a in counters.evaluate(rules, "1m", T0 + timedelta(minutes=i), service, series, row):
            assert a.score == 1.0 and a.expected == a.lower == a.upper
            assert a.detectors[0].startswith("rule:")
            fired.append(i)
    return fired


def test_fires_from_the_nth_consecutive_breach_and_while_it_lasts() -> None:
    assert run([0.01, 0.06, 0.07, 0.08, 0.09, 0.01, 0.06]) == [3, 4]
    assert run([0.06, 0.07, 0.01, 0.06, 0.07]) == []


def test_nan_missing_value_and_a_gap_restart_the_count() -> None:
    assert run([0.06, 0.06, math.nan, 0.06, 0.06, 0.06]) == [5]
    assert run([0.06, 0.06, None, 0.06, 0.06, 0.06]) == [5]
    assert run([0.06] * 6, skip=(2,)) == [5]


def test_slo_rule_per_service_on_p99() -> None:
    cfg = settings()
    names = [r.name for r in all_rules(cfg)]
    assert names == ["errors", "slo-p99-payments"]
    assert run([1600.0, 1700.0, 1400.0], cfg, series="latency_ms", stat="p99") == [1]
    assert run([1600.0, 1700.0], cfg, series="latency_ms", stat="p99", service="auth") == []
    assert run([1600.0, 1700.0], cfg, series="latency_ms", stat="avg") == []


def test_operators_and_service_filter() -> None:
    cfg = DetectSettings(rules=[RuleSettings(name="low", series="tps", op="<=", threshold=1.0,
                                             windows=1, services=["payments"])],
                         slo=SloSettings(p99_ms={}))
    assert run([2.0, 1.0, 0.5], cfg, series="tps") == [1, 2]
    assert run([2.0, 1.0, 0.5], cfg, series="tps", service="auth") == []


def test_counters_round_trip_through_json_mid_run() -> None:
    values = [0.06, 0.07, 0.01, 0.06, 0.07, 0.08, 0.09]
    first = RuleCounters()
    head = run(values[:5], counters=first)
    restored = RuleCounters(json.loads(json.dumps(first.state())))
    rules = rules_for(settings(), "payments", "error_rate")
    later = [i for i in (5, 6) if restored.evaluate(
        rules, "1m", T0 + timedelta(minutes=i), "payments", "error_rate", {"avg": values[i]})]
    assert head + later == run(values) == [5, 6]
