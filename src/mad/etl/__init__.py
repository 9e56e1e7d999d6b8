"""Stage 02: raw lake -> typed Parquet lake and time-window aggregates, on DuckDB or Spark."""
