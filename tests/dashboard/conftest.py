"""Fixtures of the dashboard tests: the pipeline's small lake (built once per session by
`tests/query/conftest.py`'s `build_lake`), private copies for tests that act, and a page run
in `AppTest` on given settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mad.config import Settings
from mad.dashboard.context import use_settings
from mad.dashboard.server import APP_SCRIPT
from tests.query.conftest import BuiltLake, build_lake, copy_lake

RANGE = "last 6 h"  # the lake holds the 2 hours before the current hour


def build_recent_lake(root: Path) -> BuiltLake:
    """`tests/query/conftest.py`'s lake (2 h, 10 events/s, with incidents), ending at the
    start of the current hour, so that the dashboard's "last 6 h" shows all of it."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    return build_lake(root, start)


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
