"""ETL engines behind one Protocol: DuckDB (embedded default) and Spark."""

from mad.etl.engines.base import ENGINES, Engine

__all__ = ["ENGINES", "Engine"]
