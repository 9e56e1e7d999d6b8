"""Quality fixtures: generated backfills (with faults and clean) and a small synthetic raw
lake of one metric series over many days, written in the raw-lake layout, so that every
check runs through the real ETL runner on DuckDB and the real state database."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.pg_server import postgres_fixture

from mad import lake
from mad.config import Settings, load_settings
from mad.etl.runner import EtlRunner, PassSummary
from mad.generate.raw_lake import split_backfill

pg = postgres_fixture("session")  # `state_url` runs a test on SQLite and on PostgreSQL

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
PER_HOUR = 40  # events per hour of the synthetic series (the distribution check wants 30)


def generated(out: Path, faults: bool) -> dict[str, Any]:
    from mad.generate.backfill import run_backfill

    overrides: dict[str, Any] = {"generate.duration": "2h", "generate.rate": 20.0}
    if faults:
        overrides.update({"generate.faults.duplicates": 0.01, "generate.faults.late": 0.01,
                          "generate.faults.malformed": 0.005,
                          "generate.faults.late_max_hours": 1.5})
    else:
        overrides.update({f"generate.faults.{f}": 0.0 for f in (
            "duplicates", "late", "out_of_order", "malformed", "unknown_fields")})
        overrides.update({"generate.faults.skewed_hosts": 0, "generate.scenarios": []})
    settings = load_settings(env={}, overrides=overrides)
    run_backfill(settings.generate, out, progress=False)
    labels: dict[str, Any] = json.loads((out / "labels.json").read_text())
    return labels


@pytest.fixture(scope="session")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """2 simulated hours at 20 events/s with more duplicates, late and malformed lines."""
    out = tmp_path_factory.mktemp("quality_faulty")
    return out / "events.jsonl", generated(out, faults=True)


@pytest.fixture(scope="session")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """2 simulated hours with every fault and incident turned off."""
    out = tmp_path_factory.mktemp("quality_clean")
    return out / "events.jsonl", generated(out, faults=False)


def settings_for(root: Path, state_url: str | None = None, **more: Any) -> Settings:
    overrides: dict[str, Any] = {"data_dir": str(root / "data"), "lake.url": str(root / "lake"),
                                 "etl.windows": ["1h"], "detect.window": "1h", **more}
    if state_url:
        overrides["state.url"] = state_url
    return load_settings(env={}, overrides=overrides)


def etl_pass(settings: Settings) -> tuple[PassSummary, EtlRunner]:
    runner = EtlRunner(settings)
    try:
        return runner.run_once(), runner
    finally:
        runner.close()


@pytest.fixture
def split() -> Callable[[Path, Path], list[Path]]:
    return split_backfill


# -- a synthetic series ---------------------------------------------------------------------

Shape = Callable[[int, datetime], dict[str, Any] | None]
"""(index within the hour, hour start) -> one event's changes, or None to leave it out."""


def cpu_events(hours: int, rng: np.random.Generator, drift_per_day: float = 0.0,
               drift_from_day: int = 3, shape: Shape | None = None,
               per_hour: int = PER_HOUR) -> dict[datetime, list[dict[str, Any]]]:
    """`host.cpu` of the payments service, `per_hour` events an hour: a daily cycle and
    noise; from day `drift_from_day` on, the mean drifts by `drift_per_day` a day."""
    out: dict[datetime, list[dict[str, Any]]] = {}
    for h in range(hours):
        at = START + timedelta(hours=h)
        day = h / 24
        drift = 1.0 + drift_per_day * max(0.0, day - drift_from_day)
        level = 40.0 * (1.0 + 0.2 * math.sin(2 * math.pi * (h % 24) / 24)) * drift
        events = []
        for i in range(per_hour):
            ts = at + timedelta(seconds=(i + 0.5) * 3600 / per_hour)
            event: dict[str, Any] = {
                "event_id": f"cpu-{h:05d}-{i:04d}", "timestamp": ts.isoformat(),
                "service": "payments", "event_type": "host.cpu", "kind": "metric",
                "level": "INFO", "host": f"payments-{1 + i % 2}", "message": "",
                "metrics": {"cpu_pct": round(level * (1 + 0.05 * rng.standard_normal()), 3),
                            "load_avg": round(1.5 * (1 + 0.05 * rng.standard_normal()), 3)},
            }
            if shape is not None:
                change = shape(i, at)
                if change is None:
                    continue
                event.update(change)
            events.append(event)
        out[at] = events
    return out


def write_raw(root: Path, hours: dict[datetime, list[dict[str, Any]]],
              raw_lines: dict[datetime, list[str]] | None = None) -> list[Path]:
    """One raw file per hour (ingest hour = event hour), in the raw-lake layout."""
    written = []
    for at, events in sorted(hours.items()):
        epoch = at.timestamp()
        key = lake.raw_key("metric", "payments", epoch, gzip=False)
        path = root / "lake" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(e) for e in events] + list((raw_lines or {}).get(at, []))
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def partition(at: datetime) -> str:
    return f"date={at:%Y-%m-%d}/hour={at:%H}"
