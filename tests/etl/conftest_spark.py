"""A real local Spark session for tests, `local[2]` with the engine's settings.

In a test module, `spark = spark_fixture()` at module level gives a module-scoped fixture named
`spark` (the session is stopped after the module). PySpark and Java 17 must be installed;
without PySpark the module's tests are skipped with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

START_SECONDS: dict[str, float] = {}  # how long the last session took to start, for reports


def spark_fixture(master: str = "local[2]") -> Callable[..., Any]:
    """A module-scoped `spark` fixture running on `master`."""

    @pytest.fixture(scope="module")
    def spark() -> Iterator[SparkSession]:
        pytest.importorskip("pyspark", reason="pyspark is not installed")
        from mad.etl.engines.spark.session import spark_session

        started = time.monotonic()
        session = spark_session(master=master, app_name="mad-tests")
        START_SECONDS[master] = time.monotonic() - started
        try:
            yield session
        finally:
            session.stop()

    return spark
