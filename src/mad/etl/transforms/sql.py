"""Small SQL builders shared by the transforms (DuckDB dialect, chosen to transpile to Spark).

Timestamps: `TIMESTAMP_SQL` turns the text of a JSON `timestamp` into a UTC `TIMESTAMP`
(no time zone; the engines run with session time zone UTC):

- a number is epoch seconds, or epoch milliseconds when its magnitude is >= 1e10, rounded to
  the millisecond (`epoch_ms`, which Spark runs as `TIMESTAMP_MILLIS`);
- anything else is cast as ISO-8601 with an optional offset (`Z`, `+05:30`, ...; no offset is
  UTC) and converted to UTC;
- results outside 2000-01-01 .. 2100-01-01 are NULL (rejected as `bad_timestamp`), as in
  `mad.events.parse_timestamp`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mad.catalog import EVENT_TYPES

_EPOCH = "TRY_CAST({raw} AS DOUBLE)"
_RAW_TIME = (
    "CASE WHEN " + _EPOCH + " IS NOT NULL THEN CASE"
    " WHEN abs(" + _EPOCH + ") >= 1e15 THEN NULL"
    " WHEN abs(" + _EPOCH + ") >= 1e10 THEN epoch_ms(CAST(round(" + _EPOCH + ") AS BIGINT))"
    " ELSE epoch_ms(CAST(round(" + _EPOCH + " * 1000) AS BIGINT)) END"
    " WHEN length({raw}) BETWEEN 10 AND 40"
    " THEN CAST(TRY_CAST({raw} AS TIMESTAMPTZ) AS TIMESTAMP) END"
)
# The range check names the parsed value once (`CASE WHEN x >= lo AND x < hi THEN x` would
# parse it three times): below `lo` -> greatest() gives the bound just under it -> NULLIF makes
# it NULL; at or above `hi` -> least() gives `hi` -> NULL.
TIMESTAMP_SQL = (
    "NULLIF(least(NULLIF(greatest(" + _RAW_TIME + ", TIMESTAMP '1999-12-31 23:59:59.999999'),"
    " TIMESTAMP '1999-12-31 23:59:59.999999'), TIMESTAMP '2100-01-01 00:00:00'),"
    " TIMESTAMP '2100-01-01 00:00:00')"
)


def series_names() -> list[str]:
    """Every numeric series of the catalog, once each, in catalog order."""
    seen: dict[str, None] = {}
    for t in EVENT_TYPES:
        for s in t.series:
            seen.setdefault(s.name, None)
    return list(seen)


def quote(name: str) -> str:
    """A quoted identifier (series names such as `rows` are SQL keywords)."""
    return '"' + name.replace('"', '""') + '"'


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join(sql_str(v) for v in values)


def values_table(rows: Sequence[Sequence[str]], names: Sequence[str]) -> str:
    """`SELECT * FROM (VALUES ...) AS t(names)`: a small constant table."""
    body = ", ".join("(" + sql_list(row) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {body}) AS t({', '.join(names)})"
