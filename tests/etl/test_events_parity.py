"""The events, partitions and aggregates plans give the same rows on DuckDB and Spark; so do
the identity rules of the events plan on hand-written lines (`test_identity.py`).

One small generated raw lake (the log files of `raw_lake`) runs through both engines. Rows of
`events`, `quarantine` and `partitions` and every count must match; the aggregates of every
window over the same events (the first event hour bound as `history`) likewise. Floats to ~9
significant digits, and `extra` as a parsed JSON value (its text may differ in key order inside
nested objects and in number spelling, see `mad.etl.transforms.events`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from mad.etl.engines import Engine
from mad.etl.engines.spark.engine import SparkEngine
from mad.etl.transforms.aggregates import WINDOWS, aggregates_plan
from mad.etl.transforms.events import events_plan, partitions_plan
from tests.etl.conftest_spark import spark_fixture
from tests.etl.test_identity import IdentityCase

pytestmark = pytest.mark.spark
spark = spark_fixture()

MAX_FILES = 4


def _norm(value: Any, column: str) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.9g}")
    if column == "extra" and isinstance(value, str):
        return json.loads(value)
    return value


def _rows(out: Path, name: str, order: str) -> list[dict[str, Any]]:
    import duckdb

    pattern = f"{out}/{name}/**/*.parquet"
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, "
                     f"hive_types_autocast = false) ORDER BY {order}")
    return [{c: _norm(v, c) for c, v in zip(rel.columns, row, strict=True)}
            for row in rel.fetchall()]


def test_events_plan_parity(engine: Engine, spark: Any, raw_lake: tuple[Path, list[Path]],
                            tmp_path: Path) -> None:
    _lake, files = raw_lake
    logs = sorted(str(f) for f in files if "md-raw-logs" in str(f))[:MAX_FILES]
    assert logs
    spark_engine = SparkEngine(session=spark)
    outs = {"duckdb": tmp_path / "duck", "spark": tmp_path / "spark"}
    counts = {}
    for name, eng in (("duckdb", engine), ("spark", spark_engine)):
        eng.execute(partitions_plan(), logs, {}, str(outs[name] / "p"))
        counts[name] = eng.execute(events_plan("log"), logs, {"existing": []},
                                   str(outs[name] / "e"))
    assert counts["duckdb"] == counts["spark"]
    assert counts["duckdb"]["count_new"] > 0
    for sub, name, order in (("e", "events", "event_id"),
                             ("e", "quarantine", "source_file, line_no"),
                             ("p", "partitions", "date, hour")):
        duck = _rows(outs["duckdb"] / sub, name, order)
        spk = _rows(outs["spark"] / sub, name, order)
        assert len(duck) == len(spk), name
        for a, b in zip(duck, spk, strict=True):
            assert a == b, name


def test_aggregates_plan_parity(engine: Engine, spark: Any, raw_lake: tuple[Path, list[Path]],
                                tmp_path: Path) -> None:
    _lake, files = raw_lake
    raw = sorted(str(f) for f in files)[:2 * MAX_FILES]
    engine.execute(events_plan(), raw, {"existing": []}, str(tmp_path / "events"))
    parquet = sorted(str(p) for p in (tmp_path / "events" / "events").rglob("*.parquet"))
    first_hour = min(p.split("hour=")[1][:2] for p in parquet)
    history = [p for p in parquet if f"hour={first_hour}/" in p]
    events = [p for p in parquet if p not in history]
    assert history and events
    spark_engine = SparkEngine(session=spark)
    for window in WINDOWS:
        counts = {}
        for name, eng in (("duckdb", engine), ("spark", spark_engine)):
            counts[name] = eng.execute(aggregates_plan(window), [],
                                       {"events": events, "history": history},
                                       str(tmp_path / name / window))
        assert counts["duckdb"] == counts["spark"], window
        assert counts["duckdb"]["aggregates"] > 0, window
        order = '"window", date, window_start, service, series'
        duck = _rows(tmp_path / "duckdb" / window, "aggregates", order)
        spk = _rows(tmp_path / "spark" / window, "aggregates", order)
        assert len(duck) == len(spk), window
        for a, b in zip(duck, spk, strict=True):
            assert a == b, window


def test_identity_rules_parity(engine: Engine, spark: Any, tmp_path: Path) -> None:
    """Duplicate keys, duplicates and reused ids (in the run, in `existing`, in `horizon`)
    and a raw file quarantined whole: the same rows and counts on both engines."""
    case = IdentityCase.build(engine, tmp_path)
    spark_engine = SparkEngine(session=spark)
    counts = {name: case.run(eng, tmp_path / name)
              for name, eng in (("duckdb", engine), ("spark", spark_engine))}
    assert counts["duckdb"] == counts["spark"]
    assert counts["duckdb"]["count_reused"] == 3
    for name, order in (("events", "event_id"), ("quarantine", "source_file, line_no")):
        duck = _rows(tmp_path / "duckdb", name, order)
        assert duck == _rows(tmp_path / "spark", name, order), name
    reasons = [r["reason"] for r in _rows(tmp_path / "spark", "quarantine", "line_no")]
    assert reasons.count("duplicate_key") == 3 and "unreadable_file" in reasons
