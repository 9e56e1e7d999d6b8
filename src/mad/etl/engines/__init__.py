"""ETL engines behind one Protocol: DuckDB (embedded default) and Spark, a package each.

    base.py     the `Engine` Protocol and the `ENGINES` registry
    duckdb/     `duckdb`: options here, the engine in `duckdb/engine.py`
    spark/      `spark`: options here; translation, session and engine in their modules

Importing this package (as every settings load does, to check `etl.engine`) imports neither
DuckDB nor PySpark nor sqlglot: each backend's package registers a factory that imports its
engine when one is built.
"""

from mad.etl.engines.base import ENGINES, Engine

__all__ = ["ENGINES", "Engine"]
