"""SQL over the lake: one read-only `SELECT` on DuckDB over views named after the datasets.

`run_sql(settings, text)` answers a statement such as
`SELECT service, count(*) FROM events_logs WHERE date = '2026-11-01' GROUP BY 1` with its
columns and rows. The views (`VIEWS`) read each dataset's Parquet files with Hive
partitioning, so a filter on `date`, `hour` or `window` reads only those partitions. A view
exists once its dataset has files; `mad query --views` lists them.

Read-only, three ways over:
- the statement is parsed (`sqlglot`, DuckDB's dialect) and must be exactly one `SELECT`
  (with `WITH`, `UNION`, ...) or `DESCRIBE`; anything else (`COPY`, `INSERT`, `ATTACH`,
  `SET`, `PRAGMA`, `INSTALL`, ...) is refused, and so is any function that reads files
  (`read_parquet`, `read_csv`, `glob`, ...): the lake is read through its views only;
- the DuckDB connection can reach only the lake's folder (`allowed_directories`, external
  access off, configuration locked once the views exist);
- every statement is bounded: at most `limit` rows come back (one more is read to say the
  result was cut), DuckDB's memory is capped, and a statement still running after
  `timeout_s` is interrupted.

On an S3 lake the views read `s3://` through DuckDB's httpfs extension (loaded offline from
the `duckdb-extension-httpfs` package) with the lake's endpoint and credentials (`aws.*`), and
the connection may reach only the lake's prefix of its bucket. `--engine spark` reads a local
lake only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB

from mad import lake
from mad.config import AwsSettings, Settings
from mad.query.access import DUCKDB_MEMORY, QueryError, first_line, open_lake
from mad.stores.duckdb_s3 import load_s3

VIEWS: dict[str, str] = {
    **{f"events_{kind}s" if kind != "apm" else "events_apm": dataset
       for kind, dataset in lake.TRANSFORMED_DATASETS.items()},
    "aggregates": lake.AGGREGATES_DATASET,
    "anomalies": lake.ANOMALIES_DATASET,
    "quarantine": lake.QUARANTINE_DATASET,
}
"""View name -> the lake dataset it reads."""

ALLOWED = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Describe)
FILE_FUNCTIONS = ("read_", "parquet_", "glob", "sniff_csv", "query_table", "iceberg_",
                  "delta_scan", "sqlite_", "postgres_", "mysql_")
MAX_LIMIT = 1_000_000
MAX_TIMEOUT_S = 3600.0


@dataclass
class SqlResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False  # more rows than `limit`: only the first are here
    views: list[str] = field(default_factory=list)


def check_sql(text: str) -> str:
    """`text` if it is one read-only statement over the views; else a QueryError saying why
    in one line."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("no SQL given: e.g. mad query \"SELECT count(*) FROM events_logs\"")
    if len(text) > 100_000:
        raise QueryError("the statement is over 100,000 characters")
    try:
        statements = [s for s in sqlglot.parse(text, read=DuckDB) if s is not None]
    except sqlglot.errors.ParseError as err:
        raise QueryError(f"cannot parse the statement: {first_line(err)}") from None
    if len(statements) != 1:
        raise QueryError(f"one statement at a time ({len(statements)} given)")
    (tree,) = statements
    if not isinstance(tree, ALLOWED):
        kind = type(tree).__name__.upper()
        raise QueryError(f"read-only: only SELECT (or DESCRIBE) over the lake's views is "
                         f"allowed, not {kind}")
    for node in tree.walk():
        if isinstance(node, exp.Command | exp.Insert | exp.Update | exp.Delete | exp.Create
                      | exp.Drop | exp.Copy | exp.Alter | exp.Merge):
            raise QueryError(f"read-only: {type(node).__name__.upper()} is not allowed")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name.startswith(FILE_FUNCTIONS):
                raise QueryError(f"{name}(): the lake is read through its views only "
                                 f"({', '.join(VIEWS)})")
        if isinstance(node, exp.Table) and ("." in node.sql() or node.catalog or node.db):
            raise QueryError(f"{node.sql()}: only the lake's views can be read "
                             f"({', '.join(VIEWS)})")
    return text


def lake_folders(root: Path) -> dict[str, Path]:
    """The views whose dataset has Parquet files under `root`: name -> the dataset's
    folder."""
    return {view: root / dataset for view, dataset in VIEWS.items()
            if (root / dataset).is_dir()
            and next((root / dataset).rglob("*.parquet"), None) is not None}


def lake_views(root: Path) -> dict[str, str]:
    """The views whose dataset has Parquet files under `root`: name -> glob."""
    found = {}
    for view, folder in lake_folders(root).items():
        depth = max(len(p.relative_to(folder).parts) for p in folder.rglob("*.parquet"))
        found[view] = str(folder) + "/*" * (depth - 1) + "/*.parquet"
    return found


def local_root(settings: Settings) -> Path:
    """The lake's folder; a QueryError for a lake that is not a local folder."""
    store = open_lake(settings)
    root = getattr(store, "root", None)
    if not isinstance(root, Path):
        raise QueryError(f"this reads a local lake only; {store.url} is not one")
    return root


@dataclass
class Location:
    """Where the views read: the lake's root (a folder, or `s3://bucket/prefix`), each
    view's glob, and the S3 settings DuckDB needs (None for a local lake)."""

    root: str
    views: dict[str, str]
    s3: AwsSettings | None = None


def lake_location(settings: Settings) -> Location:
    """The lake's views, local or on S3 (a view per dataset that has Parquet files)."""
    store = open_lake(settings)
    root = getattr(store, "root", None)
    if isinstance(root, Path):
        return Location(str(root), lake_views(root))
    url = store.url.rstrip("/")
    views = {}
    for view, dataset in VIEWS.items():
        depths = [k.count("/") for k in store.list(dataset + "/") if k.endswith(".parquet")]
        if depths:
            views[view] = f"{url}/{dataset}" + "/*" * (max(depths) - 1) + "/*.parquet"
    return Location(url, views, settings.aws)


def run_sql(settings: Settings, text: str, limit: int = 10_000,
            timeout_s: float = 120.0, threads: int = 2) -> SqlResult:
    """Run one read-only statement over the lake's views (see the module docstring)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT:,} rows")
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise QueryError(f"timeout must be between 0 and {MAX_TIMEOUT_S:.0f} s")
    check_sql(text)
    where = lake_location(settings)
    root, views = where.root, where.views
    con = duckdb.connect(config={"threads": threads, "memory_limit": DUCKDB_MEMORY})
    try:
        if where.s3 is not None:
            load_s3(con, where.s3, "mad_lake")
        for view, pattern in views.items():
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet("
                        f"'{_quoted(pattern)}', hive_partitioning = true, "
                        "hive_types_autocast = false, union_by_name = true)")
        con.execute(f"SET allowed_directories = ['{_quoted(str(root))}/']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        timer = threading.Timer(timeout_s, con.interrupt)
        timer.start()
        try:
            rel = con.execute(text)
            rows = rel.fetchmany(limit + 1)
            columns = [d[0] for d in rel.description or []]
            types = [str(d[1]) for d in rel.description or []]
        except duckdb.InterruptException:
            raise QueryError(f"the statement ran over {timeout_s:g} s and was stopped "
                             "(--timeout)") from None
        except duckdb.CatalogException as err:
            raise QueryError(f"{first_line(err)} (views: {', '.join(views) or 'none yet'})"
                             ) from None
        except duckdb.Error as err:
            raise QueryError(first_line(err)) from None
        finally:
            timer.cancel()
    finally:
        con.close()
    return SqlResult(columns, types, rows[:limit], truncated=len(rows) > limit,
                     views=sorted(views))


def _quoted(text: str) -> str:
    if "'" in text or "\\" in text:
        raise QueryError(f"the lake path {text!r} has a quote or backslash in it")
    return text
