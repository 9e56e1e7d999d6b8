"""`mad doctor`'s check of the DuckDB engine: importable, and httpfs loads offline for an
S3 lake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mad.setup_checks import backend_check

if TYPE_CHECKING:
    from mad.config import Settings


@backend_check("engine", "duckdb")
def check(settings: Settings) -> tuple[bool, str]:
    import duckdb

    from mad.stores import split_url

    if split_url(settings.lake_url)[0] != "s3":
        return True, f"duckdb {duckdb.__version__}"
    from mad.stores.duckdb_s3 import load_s3

    con = duckdb.connect()
    try:
        load_s3(con, settings.aws)
    finally:
        con.close()
    return True, f"duckdb {duckdb.__version__}, httpfs loaded for the S3 lake"
