"""Points per second of the default ensemble and of each detector, beside river's
HalfSpaceTrees, on the same series in one run.

Run: `.venv/bin/python benchmarks/bench_detect.py [--data FILE.csv] [--points N]`
(needs `river`: `pip install -e '.[bench]'`). Every detector scores then learns every point
of the same series, both through `score_many` (one call for the series: the path `mad bench
nab` and batch scoring take) and one point at a time (`score_one` + `learn_one`). river's
HalfSpaceTrees (one feature, min-max scaled, its defaults) has only the point-by-point path.
Compiled kernels are loaded (or compiled, the first time) on a short warm-up series before
any clock starts; that one-off cost is printed on its own line. The ratio column is
points/s over river's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mad.bench import nab
from mad.bench.nab_io import read_series
from mad.detect.detectors import create, known
from mad.detect.detectors.base import epoch_seconds, score_loop

DEFAULT = Path("/work/shared/datasets/nab/data/realKnownCause/nyc_taxi.csv")
SKIP = {"cusum"}  # a drift test over daily ratios, fed by the quality stage, not a stream


def synthetic(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = 1_700_000_000 + 300 * np.arange(n)
    return t.astype(float), 10 + 3 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, 0.4, n)


def make(name: str, n: int) -> object:
    params = {"warmup": nab.probation_length(n)} if name in ("ensemble", "spatial") else {}
    return create(name, **params)


def rate(name: str, t: np.ndarray, x: np.ndarray, batch: bool) -> float | None:
    det = make(name, len(x))
    many = getattr(det, "score_many", None)
    if batch and many is None:
        return None
    start = time.perf_counter()
    if batch:
        many(x, t)  # type: ignore[misc]
    else:
        score_loop(det, t, x)  # type: ignore[arg-type]
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


def warm(names: list[str]) -> float:
    """Load or compile every kernel on a short series; seconds taken."""
    t, x = synthetic(400)
    start = time.perf_counter()
    for name in names:
        det = make(name, len(x))
        many = getattr(det, "score_many", None)
        if many is not None:
            many(x, t)
    return time.perf_counter() - start


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
    names = ["ensemble"] + [n for n in known() if n not in SKIP | {"ensemble"}]
    loaded = warm(names)
    peer = river_hst(x)
    print(f"series: {source}, {len(x)} points; kernels loaded in {loaded:.2f} s (once per "
          "process, compiled on first use)")
    print(f"{'detector':<26}{'batch pts/s':>13}{'ratio':>8}{'per point pts/s':>17}{'ratio':>8}")
    for name in names:
        label = "mad ensemble (default)" if name == "ensemble" else f"mad {name}"
        batch = rate(name, t, x, batch=True)
        single = rate(name, t, x, batch=False)
        assert single is not None
        b = "-" if batch is None else f"{batch:.0f}"
        br = "-" if batch is None else f"{batch / peer:.2f}x"
        print(f"{label:<26}{b:>13}{br:>10}{single:>17.0f}{single / peer:>7.2f}x")
    print(f"{'river HalfSpaceTrees':<26}{'-':>13}{'':>8}{peer:>17.0f}{1.0:>7.2f}x")


if __name__ == "__main__":
    main()
