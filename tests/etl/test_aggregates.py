"""The aggregates plan against numpy on the same values, and the outlier flag on a spike.

Tolerance: the plan's percentiles are exact (linear interpolation, numpy's default), so
values agree to 1e-9 relative; stddev is the sample one (ddof=1).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from mad.etl.engines import Engine
from mad.etl.transforms.aggregates import aggregates_plan
from mad.etl.transforms.events import events_plan

START = datetime(2026, 11, 1, 6, tzinfo=UTC).timestamp()


def make_events(tmp_path: Path, engine: Engine) -> tuple[Path, dict[int, list[float]]]:
    """40 minutes of auth latencies (a spike in minute 35), through the events plan."""
    rng = np.random.default_rng(3)
    by_minute: dict[int, list[float]] = {}
    lines = []
    for minute in range(40):
        for k in range(25):
            value = float(round(rng.lognormal(3.0, 0.2), 3)) * (20 if minute == 35 else 1)
            by_minute.setdefault(minute, []).append(value)
            lines.append(json.dumps({
                "event_id": f"e{minute}-{k}", "timestamp": START + minute * 60 + k,
                "event_type": "auth.token.issued", "kind": "log",
                "level": "ERROR" if k == 0 else "INFO", "metrics": {"latency_ms": value}}))
    raw = tmp_path / "md-raw-logs/service=auth/year=2026/month=11/day=01/hour=06"
    raw.mkdir(parents=True)
    (raw / ("part-" + "d" * 32 + ".jsonl")).write_text("\n".join(lines) + "\n")
    out = tmp_path / "events_out"
    engine.execute(events_plan(), [str(p) for p in raw.glob("*.jsonl")], {"existing": []},
                   str(out))
    return out, by_minute


def test_window_stats_match_numpy_and_spike_is_flagged(engine: Engine, tmp_path: Path) -> None:
    events, by_minute = make_events(tmp_path, engine)
    files = [str(p) for p in events.glob("events/*/*/*.parquet")]
    out = tmp_path / "agg"
    counts = engine.execute(aggregates_plan("1m"), [], {"events": files, "history": []},
                            str(out))
    assert counts["aggregates"] > 0
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{out}/aggregates/*/*/*.parquet', "
                     "hive_partitioning = true, hive_types_autocast = false) "
                     "WHERE service = 'auth' ORDER BY window_start")
    rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    latency = [r for r in rows if r["series"] == "latency_ms"]
    assert len(latency) == 40
    for r in latency:
        minute = int((r["window_start"].replace(tzinfo=UTC).timestamp() - START) // 60)
        v = np.array(by_minute[minute])
        expect = {"count": len(v), "avg": v.mean(), "min": v.min(), "max": v.max(),
                  "stddev": v.std(ddof=1), "p50": np.percentile(v, 50),
                  "p95": np.percentile(v, 95), "p99": np.percentile(v, 99)}
        for key, want in expect.items():
            assert np.isclose(r[key], want, rtol=1e-9), (minute, key)
        assert r["window"] == "1m" and r["date"] == "2026-11-01"
    flagged = [int((r["window_start"].replace(tzinfo=UTC).timestamp() - START) // 60)
               for r in latency if r["outlier"]]
    assert flagged == [35]
    errors = [r for r in rows if r["series"] == "error_rate"]
    assert all(np.isclose(r["avg"], 1 / 25) for r in errors)
    assert all(r["avg"] == 25 for r in rows if r["series"] == "events")
