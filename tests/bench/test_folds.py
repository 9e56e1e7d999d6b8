"""Leave-one-category-out: thresholds and parameter sets chosen without the held-out series."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mad.bench import nab
from mad.bench.folds import leave_one_category_out, total_at

NAB = Path("/work/shared/datasets/nab")
DATA, WINDOWS = NAB / "data", NAB / "combined_windows.json"
START = np.datetime64("2026-01-01T00:00:00", "s")


def stamps(n: int = 400) -> np.ndarray:
    return START + np.arange(n).astype("timedelta64[m]")


def window(at: int, width: int = 20) -> tuple[np.datetime64, np.datetime64]:
    t = stamps()
    return t[at], t[at + width - 1]


def spike_at(rows: list[int], level: float, n: int = 400) -> np.ndarray:
    scores = np.full(n, 0.1)
    for r in rows:
        scores[r] = level
    return scores


def test_total_at_matches_the_threshold_curve() -> None:
    rng = np.random.default_rng(3)
    t = stamps()
    wins = [window(150), window(300)]
    swept = [nab.sweep(t, rng.random(400), wins, nab.PROFILES[0], 0),
             nab.sweep(t, rng.random(400), [window(200)], nab.PROFILES[0], 2)]
    thresholds, totals = nab.threshold_curve(swept, nab.PROFILES[0])
    for thr, total in list(zip(thresholds, totals, strict=True))[:: 37]:
        assert total_at(swept, nab.PROFILES[0], float(thr)) == pytest.approx(float(total))


def test_each_fold_chooses_on_the_other_categories_only() -> None:
    """Set 0 finds the window of category a, set 1 those of b and c (two series). Holding out
    a, the choice is made on b and c (set 1), so a is scored with set 1 and misses its window;
    holding out b, set 1 still wins on a and c."""
    t = stamps()
    wins = {"a/x.csv": [window(200)], "b/y.csv": [window(250)], "c/z1.csv": [window(300)],
            "c/z2.csv": [window(320)]}
    set0 = {"a/x.csv": (t, spike_at([205], 0.9)), "b/y.csv": (t, spike_at([100], 0.9)),
            "c/z1.csv": (t, spike_at([100], 0.9)), "c/z2.csv": (t, spike_at([100], 0.9))}
    set1 = {"a/x.csv": (t, spike_at([100], 0.9)), "b/y.csv": (t, spike_at([255], 0.9)),
            "c/z1.csv": (t, spike_at([305], 0.9)), "c/z2.csv": (t, spike_at([325], 0.9))}
    standard = leave_one_category_out([set0, set1], wins, nab.PROFILES[:1])[0]
    by = {f.category: f for f in standard.folds}
    assert by["a"].candidate == 1 and by["b"].candidate == 1
    assert by["a"].train > 50 and by["b"].train > 0
    assert by["a"].score is not None and by["a"].score < 0  # a false positive, window missed
    assert by["a"].false_positives == 1
    assert by["b"].score is not None and by["b"].score > 50  # found early in its window
    assert by["c"].windows == 2
    assert standard.pooled < max(f.score or 0.0 for f in standard.folds)


def test_a_category_without_windows_counts_its_false_positives() -> None:
    t = stamps()
    wins = {"a/x.csv": [window(200)], "quiet/q.csv": []}
    corpus = {"a/x.csv": (t, spike_at([205], 0.9)), "quiet/q.csv": (t, spike_at([99], 0.95))}
    standard = leave_one_category_out([corpus], wins, nab.PROFILES[:1])[0]
    quiet = next(f for f in standard.folds if f.category == "quiet")
    assert quiet.score is None and quiet.windows == 0
    assert quiet.false_positives == 1 and quiet.raw < 0
    alone = next(f for f in standard.folds if f.category == "a")
    assert standard.pooled < alone.score  # type: ignore[operator]


def test_one_category_is_refused() -> None:
    t = stamps()
    with pytest.raises(ValueError, match="two categories"):
        leave_one_category_out([{"a/x.csv": (t, spike_at([1], 0.5))}], {})


@pytest.mark.skipif(not DATA.is_dir(), reason="NAB data not present")
def test_cli_grid_reports_folds(tmp_path: Path) -> None:
    files = ["realTraffic/speed_7578.csv", "realAdExchange/exchange-3_cpc_results.csv"]
    data = tmp_path / "data"
    for name in files:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes((DATA / name).read_bytes())
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([{}, {"refractory": 0}]))
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "mad.cli", "bench", "nab", "--data", str(data), "--windows",
         str(WINDOWS), "--results", str(tmp_path / "res"), "--grid", str(grid),
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "leave one category out" in run.stdout
    report = json.loads(out.read_text())
    assert [c["params"] for c in report["candidates"]] == [{}, {"refractory": 0}]
    folds = report["folds"]["standard"]["folds"]
    assert sorted(f["category"] for f in folds) == ["realAdExchange", "realTraffic"]
    assert all(f["candidate"] in (0, 1) for f in folds)
    assert (tmp_path / "res" / "1" / "ensemble" / "realTraffic").is_dir()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    run = subprocess.run(
        [sys.executable, "-m", "mad.cli", "bench", "nab", "--data", str(data), "--windows",
         str(WINDOWS), "--results", str(tmp_path / "res"), "--grid", str(bad)],
        capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "expected a list" in run.stderr
