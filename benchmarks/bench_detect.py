"""Points per second: the default ensemble vs river's HalfSpaceTrees, on the same series.

Run: `.venv/bin/python benchmarks/bench_detect.py [--data FILE.csv] [--points N]`
(needs `river` installed). Both score then learn every point of the same series, one at a
time, in one process; the ratio is ensemble / river.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mad.bench import nab
from mad.bench.nab_io import read_series
from mad.detect.detectors import create, score_series
from mad.detect.detectors.base import epoch_seconds

DEFAULT = Path("/work/shared/datasets/nab/data/realKnownCause/nyc_taxi.csv")


def synthetic(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = 1_700_000_000 + 300 * np.arange(n)
    return t.astype(float), 10 + 3 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, 0.4, n)


def ours(t: np.ndarray, x: np.ndarray) -> float:
    det = create("ensemble", warmup=nab.probation_length(len(x)))
    start = time.perf_counter()
    score_series(det, t, x)
    return len(x) / (time.perf_counter() - start)


def river_hst(x: np.ndarray) -> float:
    from river import anomaly, preprocessing

    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=7)
    start = time.perf_counter()
    for v in x:
        features = {"x": float(v)}
        model.score_one(features)
        model.learn_one(features)
    return len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT, help="NAB-format CSV")
    parser.add_argument("--points", type=int, default=0, help="cap on points (0 = all)")
    args = parser.parse_args()
    if args.data.is_file():
        stamps, x = read_series(args.data)
        t = epoch_seconds(stamps)
        source = str(args.data)
    else:
        t, x = synthetic(10_000)
        source = "synthetic (10 000 points)"
    if args.points:
        t, x = t[: args.points], x[: args.points]
    a = ours(t, x)
    b = river_hst(x)
    print(f"series: {source}, {len(x)} points")
    print(f"{'detector':<32}{'points/s':>12}")
    print(f"{'mad ensemble (default)':<32}{a:>12.0f}")
    print(f"{'river HalfSpaceTrees':<32}{b:>12.0f}")
    print(f"ratio ensemble / river HST: {a / b:.2f}x")


if __name__ == "__main__":
    main()
