"""Shared data for the detection tests: a synthetic series with injected anomalies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mad.config import load_settings

STEP = 300  # five minutes


def synthetic(n: int = 2400, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily seasonality + noise, with spikes and one level shift; returns (t, x, labels)."""
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 + STEP * np.arange(n)
    x = 10.0 + 3.0 * np.sin(2 * np.pi * t / 86_400.0) + rng.normal(0.0, 0.4, n)
    labels = np.zeros(n, dtype=bool)
    for i in (900, 1300, 1700, 2100):
        x[i] += 6.0
        labels[i] = True
    x[1900:1960] += 5.0
    labels[1900:1910] = True
    return t, x, labels


@pytest.fixture(scope="session")
def series() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic()


@pytest.fixture(scope="session")
def etl_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ETL's 1m aggregates of 2 generated hours (20 events/s, faults included)."""
    from mad.etl.runner import EtlRunner
    from mad.generate.backfill import run_backfill
    from mad.generate.raw_lake import split_backfill

    root = tmp_path_factory.mktemp("detect_etl")
    settings = load_settings(env={}, overrides={
        "data_dir": str(root), "generate.duration": "2h", "generate.rate": 20.0,
        "etl.windows": ["1m"], "etl.engine.duckdb.memory_limit": "1GB"})
    run_backfill(settings.generate, root / "generated", progress=False)
    split_backfill(root / "generated" / "events.jsonl", Path(settings.lake_url))
    runner = EtlRunner(settings)
    try:
        runner.run_once()
    finally:
        runner.close()
    return Path(settings.lake_url)
