"""Run a detector over a NAB-format corpus and score it: the work behind `mad bench nab`.

Reads series and windows through `nab_io`, scores each series with a fresh detector (the same
parameters for every series; the windows are only read by the scorer), writes NAB's results
layout, and returns the per-profile results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mad.bench import nab, nab_io
from mad.detect.detectors import registry
from mad.detect.detectors.base import score_series
from mad.errors import MadError


@dataclass(frozen=True)
class BenchResult:
    """What one `bench nab` run produced."""

    detector: str
    series: int
    points: int
    results: list[nab.ProfileResult]
    files: list[Path]
    corpus: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (timestamps, scores)
    windows: dict[str, list[tuple[np.datetime64, np.datetime64]]]


def make_detector(name: str, rows: int, params: dict[str, Any] | None = None) -> Any:
    """A fresh detector; `warmup` is NAB's probation length when the detector takes one."""
    params = dict(params or {})
    if registry.accepts(name, "warmup"):
        params.setdefault("warmup", nab.probation_length(rows))
    return registry.create(name, **params)


def run_nab(data_dir: Path, windows_file: Path, out_dir: Path, detector: str = "ensemble",
            params: dict[str, Any] | None = None, only: list[str] | None = None,
            progress: Callable[[str], None] | None = None) -> BenchResult:
    """Score `detector` on every series under `data_dir` (or the `only` ones) and write results."""
    registry.create(detector, **(params or {}))  # fail early on a bad name or parameter
    names = nab_io.list_series(data_dir)
    if only is not None:
        missing = sorted(set(only) - set(names))
        if missing:
            raise MadError(f"series not found under {data_dir}: {', '.join(missing)}")
        names = [n for n in names if n in set(only)]
    windows = nab_io.read_windows(windows_file)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MadError(f"cannot create results folder {out_dir}: {err.strerror}") from err
    corpus: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    files = []
    points = 0
    for name in names:
        if progress is not None:
            progress(name)
        stamps, values = nab_io.read_series(data_dir / name)
        scores = score_series(make_detector(detector, len(values), params), stamps, values)
        path = nab_io.results_path(out_dir, detector, name)
        nab_io.write_results(path, stamps, values, scores)
        files.append(path)
        corpus[name] = (stamps, scores)
        points += len(values)
    scored_windows = {n: windows.get(n, []) for n in names}
    return BenchResult(detector, len(names), points, nab.score_corpus(corpus, scored_windows),
                       files, corpus, scored_windows)


def run_grid(data_dir: Path, windows_file: Path, out_dir: Path, detector: str,
             grid: list[dict[str, Any]], only: list[str] | None = None,
             progress: Callable[[str], None] | None = None) -> list[BenchResult]:
    """`run_nab` once per parameter set of `grid`, each writing under `out_dir/<k>/`."""
    if not grid:
        raise MadError("the grid has no parameter set")
    for params in grid:
        registry.create(detector, **params)  # every candidate valid before the long part
    return [run_nab(data_dir, windows_file, out_dir / str(k), detector, params, only,
                    _prefixed(progress, f"[{k}] "))
            for k, params in enumerate(grid)]


def _prefixed(progress: Callable[[str], None] | None,
              prefix: str) -> Callable[[str], None] | None:
    if progress is None:
        return None
    report = progress
    return lambda name: report(prefix + name)
