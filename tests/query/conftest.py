"""A small lake built by the pipeline itself, for the query tests and the dashboard's.

`pipeline_lake` (session scope): 2 simulated hours with incidents (`mad generate` backfill at
10 events/s, seed 7), split into a raw lake as the ingest path files it (each file recorded in
the raw files ledger, as the raw writer records it, plus one raw-errors file of rejected
records written through the ingest stage's own envelope), one ETL pass (DuckDB, windows 1m,
5m and 1h) and one detection pass (1m windows, alerts to the JSONL sink). Read it, never
change it: tests that write make their own copy (`copy_lake`).
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from mad.bench.demo import build_demo_lake
from mad.config import Settings, load_settings

REJECTED = (("invalid_json", b"{not json"), ("missing_field", b'{"kind": "log"}'),
            ("invalid_json", b"[1, 2"))


@dataclass(frozen=True)
class BuiltLake:
    """The lake and state a pipeline run left: `settings` point at them."""

    settings: Settings
    root: Path
    labels: dict[str, Any]

    @property
    def lake(self) -> Path:
        return Path(self.settings.lake_url)

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"


def lake_settings(root: Path, **extra: Any) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(root), "generate.duration": "2h", "generate.rate": 10.0,
        "etl.engine.duckdb.memory_limit": "1GB", "etl.engine.duckdb.threads": 2,
        "detect.detector.ensemble.warmup": 30, **extra})


def write_rejected(settings: Settings, when: datetime) -> None:
    """One gzipped `md-raw-errors` file of rejected records, recorded in the ledger."""
    from mad import lake as names
    from mad.ingest.intake import error_envelope
    from mad.state import RawFileLedger, open_state

    lines = [orjson.dumps(error_envelope(code, f"rejected: {code}", raw, when))
             for code, raw in REJECTED]
    data = gzip.compress(b"\n".join(lines) + b"\n")
    key = names.errors_key(when.timestamp())
    path = Path(settings.lake_url) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    ledger = RawFileLedger(open_state(settings.state_url), settings.writer.consumer)
    try:
        ledger.record(key, names.ERRORS_DATASET, None, int(when.timestamp()) // 3600 * 3600,
                      len(lines), len(data), dict(Counter(code for code, _ in REJECTED)))
    finally:
        ledger.engine.dispose()


def build_lake(root: Path, start: datetime | None = None) -> BuiltLake:
    """Run the pipeline into `root` (see the module doc); the simulated hours start at
    `start` (default the generator's, 2026-11-01 00:00 UTC)."""
    extra = {} if start is None else {"generate.start": start.isoformat()}
    settings = lake_settings(root, **extra)
    build_demo_lake(settings)
    write_rejected(settings, settings.generate.start + timedelta(minutes=90))
    labels = json.loads((root / "generated" / "labels.json").read_text())
    return BuiltLake(settings, root, labels)


@pytest.fixture(scope="session")
def pipeline_lake(tmp_path_factory: pytest.TempPathFactory) -> BuiltLake:
    """The lake and state database of one pipeline run (see the module doc)."""
    return build_lake(tmp_path_factory.mktemp("pipeline_lake"))


def copy_lake(built: BuiltLake, to: Path) -> BuiltLake:
    """A private copy of a built lake and state database, for tests that change them."""
    shutil.copytree(built.root, to, ignore=shutil.ignore_patterns("generated"))
    return BuiltLake(lake_settings(to), to, built.labels)


def duck(query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of a DuckDB query on a connection of its own (the module-level default one is
    shared with the code under test, and a failed statement there aborts it for all)."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()
