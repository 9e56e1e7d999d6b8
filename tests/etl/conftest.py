"""ETL fixtures: a small generated backfill (faults included) split into a raw lake, the
DuckDB engine, one PostgreSQL server for the session (the `state_url` fixture of
tests/conftest.py runs a test on SQLite and on PostgreSQL), and a real size-limited folder (a
tmpfs) to fill a disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mad.etl.engines import ENGINES, Engine
from tests.disks import small_disk  # noqa: F401  (a fixture for the ETL tests)
from tests.etl.helpers import split_backfill
from tests.pg_server import postgres_fixture

pg = postgres_fixture("session")


@pytest.fixture(scope="session")
def backfill(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """2 simulated hours at 20 events/s, with more duplicates and late events than usual."""
    from mad.config import load_settings
    from mad.generate.backfill import run_backfill

    out = tmp_path_factory.mktemp("etl_backfill")
    settings = load_settings(env={}, overrides={
        "generate.duration": "2h", "generate.rate": 20.0,
        "generate.faults.duplicates": 0.01, "generate.faults.late": 0.01,
        "generate.faults.malformed": 0.005, "generate.faults.late_max_hours": 1.5,
    })
    run_backfill(settings.generate, out, progress=False)
    labels = json.loads((out / "labels.json").read_text())
    return out / "events.jsonl", labels


@pytest.fixture
def raw_lake(tmp_path: Path, backfill: tuple[Path, dict[str, Any]]) -> tuple[Path, list[Path]]:
    lake = tmp_path / "lake"
    return lake, split_backfill(backfill[0], lake)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = ENGINES.create("duckdb", {"memory_limit": "1GB", "threads": 2,
                                     "temp_directory": str(tmp_path / "spill")})
    yield made
    made.close()
