"""Shared data for the detection tests: a synthetic series with injected anomalies."""

from __future__ import annotations

import numpy as np
import pytest

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
