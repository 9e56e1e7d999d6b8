"""The embedded engine, `duckdb`: its options, and its registration.

Only the options live here: `mad.config` checks `etl.engine` against the registry on every
settings load, which imports this package, and a process running the Spark engine must not
need DuckDB at all. The engine itself (`mad.etl.engines.duckdb.engine`) is imported when one
is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mad.etl.engines.base import ENGINES
from mad.etl.engines.duckdb.setup_check import check as setup_check  # noqa: F401  (registers `mad doctor`'s check)
from mad.registry import Options

if TYPE_CHECKING:
    from mad.config import AwsSettings
    from mad.etl.engines.base import Engine

MEMORY = r"^[0-9]+(\.[0-9]+)? ?([KMGT]i?B|B)$"  # a DuckDB size: 4GB, 512MiB, 1.5 GB
FOLDER = r"^[^\x00-\x1f\x7f]+$"  # a folder path: no control characters (NUL, newline, ...)


class DuckDBOptions(Options):
    """`etl.engine.duckdb.*`: the limits of each run's in-process database."""

    memory_limit: str = Field("4GB", pattern=MEMORY, description="e.g. 4GB, 512MiB")
    threads: int = Field(2, ge=1, le=256)
    temp_directory: str | None = Field(None, pattern=FOLDER, description="spill folder "
                                       "(default: the system temp dir's mad-duckdb)")


@ENGINES.register("duckdb", DuckDBOptions)
def duckdb_engine(memory_limit: str, threads: int, temp_directory: str | None,
                  s3: AwsSettings | None = None) -> Engine:
    """A `DuckDBEngine` with these options; `s3` gives it an S3 lake's endpoint and
    credentials."""
    from mad.etl.engines.duckdb.engine import DuckDBEngine

    return DuckDBEngine(memory_limit=memory_limit, threads=threads,
                        temp_directory=temp_directory, s3=s3)
