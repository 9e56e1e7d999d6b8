"""`bench nab` on a few real NAB files, through the Python API."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mad.bench.nab_run import run_nab
from mad.errors import ConfigError, MadError

NAB = Path("/work/shared/datasets/nab")
DATA, WINDOWS = NAB / "data", NAB / "combined_windows.json"
FILES = ["realTraffic/speed_7578.csv", "realAdExchange/exchange-3_cpc_results.csv"]

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="NAB data not present")


def test_bench_writes_nab_results_and_scores(tmp_path: Path) -> None:
    seen: list[str] = []
    out = run_nab(DATA, WINDOWS, tmp_path, "ensemble", only=FILES, progress=seen.append)
    assert seen == sorted(FILES)
    assert out.series == 2
    assert [r.profile for r in out.results] == [
        "standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    for r in out.results:
        assert -1000.0 < r.score <= 100.0
    for name in FILES:
        category, file = name.split("/")
        path = tmp_path / "ensemble" / category / f"ensemble_{file}"
        assert path in out.files
        with path.open() as f:
            rows = list(csv.reader(f))
        with (DATA / name).open() as f:
            source = list(csv.reader(f))
        assert rows[0] == ["timestamp", "value", "anomaly_score"]
        assert len(rows) == len(source)
        assert [r[0] for r in rows[1:]] == [r[0] for r in source[1:]]
        assert all(0.0 <= float(r[2]) <= 1.0 for r in rows[1:])


def test_bad_paths_and_names(tmp_path: Path) -> None:
    with pytest.raises(MadError, match="data folder not found"):
        run_nab(tmp_path / "nope", WINDOWS, tmp_path / "out")
    with pytest.raises(MadError, match="windows file"):
        run_nab(DATA, tmp_path / "nope.json", tmp_path / "out", only=FILES[:1])
    with pytest.raises(MadError, match="series not found"):
        run_nab(DATA, WINDOWS, tmp_path / "out", only=["x/y.csv"])
    with pytest.raises(ConfigError, match="known:"):
        run_nab(DATA, WINDOWS, tmp_path / "out", "bogus")


def test_the_bench_group_has_nab_and_incidents() -> None:
    from mad.cli.bench import bench_app

    assert [c.name for c in bench_app.registered_commands] == ["nab", "incidents"]
