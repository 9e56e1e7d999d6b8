"""Fixtures of the dashboard tests: the pipeline's small lake (built once per session by
`tests/query/conftest.py`'s `build_lake`), private copies for tests that act, and a page run
in `AppTest` on given settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mad.config import Settings
from mad.dashboard.context import use_settings
from mad.dashboard.server import APP_SCRIPT
from tests.query.conftest import (
    BuiltLake,
    copy_lake,
    lake_settings,
    record_raw_files,
    write_rejected,
)

RANGE = "last 6 h"  # the lake holds the 2 hours before the current hour


def build_recent_lake(root: Path) -> BuiltLake:
    """`tests/query/conftest.py`'s lake (2 h, 10 events/s, with incidents), ending at the
    start of the current hour, so that the dashboard's "last 6 h" shows all of it."""
    from mad.detect.pipeline import DetectRunner
    from mad.etl.runner import EtlRunner
    from mad.generate.backfill import run_backfill
    from mad.generate.raw_lake import split_backfill

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    settings = lake_settings(root, **{"generate.start": start.isoformat()})
    run_backfill(settings.generate, root / "generated", progress=False)
    files = split_backfill(root / "generated" / "events.jsonl", Path(settings.lake_url))
    record_raw_files(settings, files)
    write_rejected(settings, start + timedelta(minutes=30))
    etl = EtlRunner(settings)
    try:
        etl.run_once()
    finally:
        etl.close()
    detect = DetectRunner(settings)
    try:
        detect.run_once()
    finally:
        detect.close()
    labels = json.loads((root / "generated" / "labels.json").read_text())
    return BuiltLake(settings, root, labels)


@pytest.fixture(scope="session")
def dashboard_lake(tmp_path_factory: pytest.TempPathFactory) -> BuiltLake:
    """The lake and state database of one pipeline run; read it, never change it."""
    return build_recent_lake(tmp_path_factory.mktemp("dashboard_lake"))


@pytest.fixture
def own_lake(dashboard_lake: BuiltLake, tmp_path: Path) -> BuiltLake:
    """A private copy of the lake, for tests that store operator actions."""
    return copy_lake(dashboard_lake, tmp_path / "lake-copy")


@pytest.fixture(autouse=True)
def _no_settings_left() -> Iterator[None]:
    yield
    use_settings(None)


def page(settings: Settings, tab: str, timeout: float = 60) -> AppTest:
    """The dashboard page on `tab`, run once in AppTest on `settings`."""
    use_settings(settings)
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=timeout)
    at.query_params["tab"] = tab
    at.query_params["range"] = RANGE
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    """The value shown by the metric labelled `label`."""
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} among {[m.label for m in at.metric]}"
    return str(found[0])
