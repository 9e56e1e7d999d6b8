"""One series' scorer: anomalies while the Decider is open, JSON state, bad values."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from tests.detect.conftest import synthetic

from mad.config import DetectSettings
from mad.detect.model import Anomaly
from mad.detect.series import SeriesScorer, WindowRow

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rows(n: int = 1200) -> list[WindowRow]:
    _, x, _ = synthetic()
    return [WindowRow("payments", "latency_ms", T0 + timedelta(minutes=5 * i),
                      {"avg": float(v), "p99": float(v) * 3}) for i, v in enumerate(x[:n])]


def settings(**extra: object) -> DetectSettings:
    detector = {"backend": "ensemble", "ensemble": {"warmup": 100}}
    return DetectSettings.model_validate({"detector": detector, **extra})


def score(scorer: SeriesScorer, items: list[WindowRow]) -> list[Anomaly]:
    return [a for row in items for a in scorer.process(row)]


def test_finds_the_injected_spikes_with_a_band_and_members() -> None:
    found = score(SeriesScorer(settings(), "payments", "latency_ms"), rows())
    spikes = {a.window_start for a in found}
    assert T0 + timedelta(minutes=5 * 900) in spikes  # synthetic() spikes at 900 and 1300
    for a in found:
        assert a.key == "payments/latency_ms/avg" and a.window == "1m"
        assert a.lower <= a.expected <= a.upper and 0.0 <= a.score <= 1.0
        assert a.detectors and all(not d.startswith("rule:") for d in a.detectors)


def test_state_round_trips_mid_series() -> None:
    items = rows()
    whole = score(SeriesScorer(settings(), "payments", "latency_ms"), items)
    first = SeriesScorer(settings(), "payments", "latency_ms")
    head = score(first, items[:700])
    saved = json.loads(json.dumps(first.state()))
    tail = score(SeriesScorer(settings(), "payments", "latency_ms", saved), items[700:])
    assert head + tail == whole and whole


def test_bad_values_are_counted_and_skipped() -> None:
    items = rows(300)
    broken = [WindowRow(r.service, r.series, r.window_start,
                        {} if i % 50 == 7 else {"avg": math.nan} if i % 50 == 9 else r.values)
              for i, r in enumerate(items)]
    scorer = SeriesScorer(settings(), "payments", "latency_ms")
    found = score(scorer, broken)
    assert scorer.bad == 12 and scorer.points == 300
    assert all(math.isfinite(a.observed) for a in found)


def test_changed_detector_settings_start_a_fresh_detector() -> None:
    first = SeriesScorer(settings(), "payments", "latency_ms")
    score(first, rows(400))
    again = SeriesScorer(settings(detector={"backend": "ensemble", "ensemble": {"warmup": 50}}),
                         "payments", "latency_ms",
                         json.loads(json.dumps(first.state())))
    assert again.points == 400  # counters carry on
    assert again.state()["stats"]["avg"]["history"] == []  # detector and baseline start over


def test_a_batch_of_windows_scores_as_window_by_window() -> None:
    """`process_many` (one detector batch per stat) gives `process`'s anomalies and state,
    with members, onsets, rules, NaN values and the batch cut anywhere."""
    items = rows()
    items[400] = WindowRow(items[400].service, items[400].series, items[400].window_start,
                           {"avg": math.nan, "p99": 1.0})
    rules = [{"name": "slow", "series": "latency_ms", "stat": "p99", "op": ">",
              "threshold": 37.5, "windows": 1}]
    one = SeriesScorer(settings(rules=rules, stats=["avg", "p99"]), "payments", "latency_ms")
    expected = [one.process(row) for row in items]
    many = SeriesScorer(settings(rules=rules, stats=["avg", "p99"]), "payments", "latency_ms")
    got = []
    for a, b in ((0, 1), (1, 250), (250, 401), (401, len(items))):
        got += many.process_many(items[a:b])
    assert got == expected
    assert any(a.detectors[0].startswith("rule:") for found in got for a in found)
    assert sum(len(f) for f in got) > 5
    assert json.dumps(many.state()) == json.dumps(one.state())
