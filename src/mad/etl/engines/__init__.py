"""ETL engines behind one Protocol: DuckDB (embedded default) and Spark."""

from mad.etl.engines.base import Engine, open_engine, register_engine

__all__ = ["Engine", "open_engine", "register_engine"]
