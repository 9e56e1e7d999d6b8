"""`mad query "SELECT ..."`: one read-only SQL statement over the lake's views
(`mad.query.sql`), printed as a table, CSV or JSON, or written as Parquet."""

from __future__ import annotations

import csv
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from mad.cli.common import ConfigOption, settings_from
from mad.errors import MadError

FORMATS = ("table", "csv", "json", "parquet")
CELL_CHARS = 60  # a table cell is cut to this many characters


def register(app: typer.Typer) -> None:
    """Add the `query` command to the main app."""
    app.command("query")(query)


def query(
    sql: str = typer.Argument("", metavar="SQL", help="One SELECT over the views, e.g. "
                              "\"SELECT service, count(*) FROM events_logs GROUP BY 1\"."),
    fmt: str = typer.Option("table", "--format", help="table, csv, json or parquet."),
    out: Path | None = typer.Option(None, "--out", help="Write to this file (required for "
                                    "parquet; outside the lake)."),
    limit: int = typer.Option(10_000, help="Rows at most (the result says when it was cut)."),
    timeout: float = typer.Option(120.0, help="Seconds before the statement is stopped."),
    views: bool = typer.Option(False, "--views", help="List the views and their columns."),
    engine: str | None = typer.Option(None, "--engine", help="Run it on this ETL engine "
                                      "instead (one that offers SQL over the lake: spark), "
                                      "with its etl.engine.<name> settings."),
    config: Path | None = ConfigOption,
) -> None:
    """SQL over the lake: one read-only SELECT on DuckDB over views named after the datasets
    (events_logs, events_metrics, events_apm, aggregates, anomalies, quarantine), with
    partition pruning on date, hour and window."""
    from mad.query.sql import run_sql

    if fmt not in FORMATS:
        raise MadError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    settings = settings_from(config)
    if views:
        _print_views(settings)
        return
    if fmt == "parquet" and out is None:
        raise MadError("--format parquet writes a file: give --out FILE")
    if out is not None:
        _check_out(out, settings)
    result = (run_sql(settings, sql, limit=limit, timeout_s=timeout) if engine is None
              else _on_engine(settings, engine, sql, limit))
    if fmt == "parquet":
        assert out is not None
        _parquet(result.columns, result.rows, out)
    else:
        text = {"table": _table, "csv": _csv, "json": _json}[fmt](result.columns, result.rows)
        if out is not None:
            out.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    if result.truncated:
        typer.echo(f"(the first {limit:,} rows; --limit for more)", err=True)
    elif out is not None:
        typer.echo(f"{len(result.rows):,} rows written to {out}", err=True)


def _on_engine(settings: Any, name: str, sql: str, limit: int) -> Any:
    """The statement on the ETL engine `name`, over the same views (checked the same way)."""
    from mad.etl.engines import ENGINES
    from mad.query.sql import MAX_LIMIT, SqlResult, check_sql, lake_folders, local_root

    if name not in ENGINES.names():
        raise MadError(f"--engine {name!r}: one of {', '.join(ENGINES.names())}")
    if not 1 <= limit <= MAX_LIMIT:
        raise MadError(f"--limit must be between 1 and {MAX_LIMIT:,} rows")
    check_sql(sql)
    folders = {view: str(f) for view, f in lake_folders(local_root(settings)).items()}
    made = ENGINES.create(name, settings.etl.engine.options(name))
    try:
        select = getattr(made, "select", None)
        if select is None:  # the embedded engine: the sandboxed run of `run_sql` is its own
            from mad.query.sql import run_sql

            return run_sql(settings, sql, limit=limit)
        columns, rows, cut = select(sql, folders, limit)
    finally:
        made.close()
    return SqlResult(columns, [], rows, truncated=cut, views=sorted(folders))


def _print_views(settings: Any) -> None:
    from mad.query.sql import run_sql

    first = run_sql(settings, "SELECT 1")
    if not first.views:
        typer.echo("no views yet: the lake holds no Parquet (run `mad etl run`)")
        return
    for view in first.views:
        described = run_sql(settings, f"DESCRIBE {view}")
        cols = ", ".join(f"{r[0]} {r[1]}" for r in described.rows)
        typer.echo(f"{view}: {cols}")


def _check_out(out: Path, settings: Any) -> None:
    from mad.query.access import open_lake

    root = getattr(open_lake(settings), "root", None)
    target = out.resolve()
    if isinstance(root, Path) and target.is_relative_to(root.resolve()):
        raise MadError(f"--out {out}: inside the lake ({root}); write the result elsewhere")
    if not target.parent.is_dir():
        raise MadError(f"--out {out}: no folder {target.parent}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [[_cell(v)[:CELL_CHARS] for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    lines.append(f"({len(rows):,} rows)")
    return "\n".join(lines) + "\n"


def _csv(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def _json(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    import orjson

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return float(value)
        return str(value)

    return orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows],
                        default=default, option=orjson.OPT_NAIVE_UTC).decode() + "\n"


def _parquet(columns: list[str], rows: list[tuple[Any, ...]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([dict(zip(columns, row, strict=True)) for row in rows])
    if not columns:
        table = pa.table({})
    pq.write_table(table, out, compression="snappy")
