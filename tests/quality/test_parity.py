"""The checks give the same results on DuckDB and on Spark: the same raw lake, one ETL pass
on each engine (each with its own state database), the same result rows and verdicts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.etl.conftest_spark import spark_fixture
from tests.quality.conftest import settings_for

from mad import lake
from mad.etl.runner import EtlRunner
from mad.state import QualityStore, open_state

pytestmark = [pytest.mark.spark, pytest.mark.slow]

spark = spark_fixture()

KEPT = ("dataset", "partition", "check", "column", "metric", "status", "threshold")


def comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows without run ids and times. Two figures differ by nature, so only their
    presence is compared: compression (each engine's Parquet writer encodes its own way)
    and the lake lag (it depends on when the run ran)."""
    out = []
    for r in rows:
        differs = r["check"] in ("compression", "freshness")
        detail = "" if differs else str(r["detail"])
        if r["metric"] == "new_field":  # the example's keys come in each engine's order
            detail = detail.split(", e.g. ")[0]
        out.append((*(r[k] for k in KEPT), 0.0 if differs else round(float(r["value"]), 6),
                    detail))
    return sorted(out)


def test_the_checks_agree_on_duckdb_and_spark(
        tmp_path: Path, spark: Any, faulty: tuple[Path, dict[str, Any]],
        split: Callable[[Path, Path], list[Path]]) -> None:
    from mad.etl.engines.spark.engine import SparkEngine

    events, _ = faulty
    split(events, tmp_path / "duck" / "lake")
    for kind in ("log", "metric"):  # APM alone keeps the Spark pass short
        shutil.rmtree(tmp_path / "duck" / "lake" / lake.raw_dataset(kind))
    shutil.copytree(tmp_path / "duck" / "lake", tmp_path / "spark" / "lake")
    found = {}
    for name in ("duck", "spark"):
        settings = settings_for(tmp_path / name)
        engine = SparkEngine(session=spark) if name == "spark" else None
        runner = EtlRunner(settings, engine=engine)
        try:
            runner.run_once()
        finally:
            if name != "spark":
                runner.close()
        found[name] = QualityStore(open_state(settings.state_url)).results()
    duck, spk = comparable(found["duck"]), comparable(found["spark"])
    assert len(duck) > 100
    assert {r[5] for r in duck} >= {"pass", "warn", "skip", "info"}
    assert [r for r in duck if r not in spk] == [r for r in spk if r not in duck] == []
