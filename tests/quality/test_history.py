"""A slow drift that crosses no fixed threshold is flagged by the history detector, and the
same series without the drift is not; the history survives a restart of the ETL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tests.quality.conftest import START, cpu_events, etl_pass, partition, settings_for, write_raw

from mad.state import QualityStore, open_state

DRIFT_FROM = START + timedelta(days=3)


def run_series(root: Path, drift: float, state_url: str | None = None,
               days: int = 8) -> list[dict[str, Any]]:
    write_raw(root, cpu_events(24 * days, np.random.default_rng(5), drift_per_day=drift,
                               drift_from_day=3))
    settings = settings_for(root, state_url)
    etl_pass(settings)
    return QualityStore(open_state(settings.state_url)).results()


def flagged(rows: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["check"] == check and r["status"] in ("warn", "fail")),
                  key=lambda r: r["partition"])


def test_a_five_percent_a_day_drift_is_flagged_by_the_history_detector(tmp_path: Path) -> None:
    rows = run_series(tmp_path, drift=0.05)
    drift = [r for r in flagged(rows, "history") if r["column"] == "cpu_pct"]
    assert drift, "the drift was not flagged"
    assert drift[0]["partition"] >= partition(DRIFT_FROM)  # never before it began
    assert drift[0]["partition"] <= partition(DRIFT_FROM + timedelta(days=2))
    assert drift[0]["metric"] in ("mean_drift_score", "p95_drift_score")
    assert "cusum" in drift[0]["detail"]
    # no fixed threshold saw it: the mean never moved 50% from its seasonal baseline
    assert flagged(rows, "distribution") == []
    assert [r for r in flagged(rows, "history") if r["column"] != "cpu_pct"] == []


def test_the_same_series_without_drift_raises_nothing(tmp_path: Path) -> None:
    rows = run_series(tmp_path, drift=0.0)
    assert [r for r in rows if r["check"] == "history"]  # judged, every hour from day 3 on
    assert [r for r in rows if r["status"] in ("warn", "fail")] == []


def test_history_survives_a_restart(tmp_path: Path, state_url: str) -> None:
    """The first days in one ETL process, the rest in another: the second judges against
    what the first stored, so the baseline and the detector see the whole history."""
    hours = cpu_events(24 * 5, np.random.default_rng(5))
    first = {at: ev for at, ev in hours.items() if at < START + timedelta(days=4)}
    write_raw(tmp_path, first)
    settings = settings_for(tmp_path, state_url)
    etl_pass(settings)
    write_raw(tmp_path, {at: ev for at, ev in hours.items() if at not in first})
    etl_pass(settings)
    rows = QualityStore(open_state(settings.state_url)).results(
        partition=partition(START + timedelta(days=4, hours=6)))
    volume = [r for r in rows if r["check"] == "volume"]
    assert [r["status"] for r in volume] == ["pass"]
    assert "median of 4 same hours on earlier days" in volume[0]["detail"]
    assert [r["status"] for r in rows if r["check"] == "history"] != []
