"""The checks' measurements as plans: one definition, run by every ETL engine.

Both plans return long rows `(date, hour, chk, col, metric, value, detail)` from their
`measures` step, which `Engine.query` hands back (a few hundred rows per run); the judging
(thresholds, history, the gate) happens in Python on those rows (`mad.quality.checks`).

`partition_plan` reads `events`: every row of the partitions a run is about to publish (the
run's stage, so the checks see exactly what the lake will hold). One cached scan computes
all per-partition aggregates (`wide`); the unknown top-level fields of `extra` take a second,
narrow scan; freshness reads only the rows of the run's own raw files.

`quarantine_plan` reads `quarantine`: the lines this run quarantined, counted by reason, and
the values of known fields with the wrong JSON type (by pattern on the raw line, as the ETL
checks `event_id`), with examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mad.catalog import EVENT_TYPES
from mad.errors import ConfigError
from mad.etl.plan import Plan, Step
from mad.etl.transforms.events import NESTED, columns, schema_sql
from mad.etl.transforms.sql import quote, sql_list, sql_str, values_table

LEVELS = sorted({lv for t in EVENT_TYPES for lv in t.levels})
QUARANTINE_COLUMNS = [("reason", "VARCHAR"), ("line", "VARCHAR"), ("source_file", "VARCHAR"),
                      ("line_no", "BIGINT"), ("ingest_hour", "TIMESTAMP"), ("date", "VARCHAR"),
                      ("hour", "VARCHAR")]
# Known fields whose JSON type is fixed, and a pattern matching a value of another type.
NOT_TEXT = "(-?[0-9]|true|false|null|[{\\[])"
NOT_NUMBER = "([\"{\\[]|true|false)"
NOT_OBJECT = "([\"0-9tfn\\[-])"
TYPED_FIELDS: tuple[tuple[str, str], ...] = (
    ("event_id", NOT_TEXT), ("event_type", NOT_TEXT), ("kind", NOT_TEXT),
    ("service", NOT_TEXT), ("timestamp", "(true|false|null|[{\\[])"),
    ("metrics", NOT_OBJECT), ("context", NOT_OBJECT), ("trace", NOT_OBJECT),
    ("error", NOT_OBJECT),
)


def kind_series(kind: str) -> list[str]:
    """The numeric series events of `kind` carry, in catalog order."""
    seen: dict[str, None] = {}
    for t in EVENT_TYPES:
        if t.kind == kind:
            for s in t.series:
                seen.setdefault(s.name, None)
    return list(seen)


def _ts(value: datetime) -> str:
    return f"CAST({sql_str(f'{value:%Y-%m-%d %H:%M:%S}')} AS TIMESTAMP)"


def _row(chk: str, col: str, metric: str, value: str, source: str = "wide",
         detail: str = "CAST(NULL AS VARCHAR)") -> str:
    return (f"SELECT date, hour, {sql_str(chk)} AS chk, {sql_str(col)} AS col, "
            f"{sql_str(metric)} AS metric, CAST({value} AS DOUBLE) AS value, "
            f"{detail} AS detail FROM {source}")


def partition_plan(kind: str, required: Sequence[str], run_files: Sequence[str],
                   now: datetime, future_skew_s: float) -> Plan:
    """Measure the partitions bound as `events` (rows of `kind`); `required` are the flat
    columns that must not be NULL, `run_files` the raw files of the run (freshness), `now`
    the lake time (UTC, naive)."""
    known = {name for name, _ in columns()}
    unknown = [c for c in required if c not in known]
    if unknown:
        raise ConfigError(f"quality.completeness.columns: unknown column {unknown[0]!r} "
                          f"(known: {', '.join(sorted(known))})")
    series = kind_series(kind)
    aggs = ["count(*) AS n_rows", "count(DISTINCT event_id) AS n_ids",
            "max(epoch(event_time)) AS newest"]
    rows: list[str] = [_row("volume", "*", "rows", "n_rows"),
                       _row("freshness", "event_time", "newest_s", "newest"),
                       _row("uniqueness", "event_id", "duplicates_in_lake", "n_rows - n_ids")]
    for i, col in enumerate(required):
        aggs.append(f"sum(CASE WHEN {quote(col)} IS NULL THEN 1 ELSE 0 END) AS null_{i}")
        rows.append(_row("completeness", col, "null_rate", f"null_{i} / n_rows"))
    negative = " OR ".join(f"{quote(s)} < 0" for s in series) or "false"
    future = f"epoch(event_time) > epoch(ingest_hour) + {3600 + float(future_skew_s)}"
    aggs += [
        f"sum(CASE WHEN level IS NOT NULL AND level NOT IN ({sql_list(LEVELS)}) "
        "THEN 1 ELSE 0 END) AS bad_level",
        f"sum(CASE WHEN {negative} THEN 1 ELSE 0 END) AS negative",
        "sum(CASE WHEN status_code < 100 OR status_code > 599 THEN 1 ELSE 0 END) AS bad_status",
        f"sum(CASE WHEN {future} THEN 1 ELSE 0 END) AS future",
    ]
    rows += [_row("validity", "level", "invalid_rate", "bad_level / n_rows"),
             _row("validity", "metrics", "negative_rate", "negative / n_rows"),
             _row("validity", "status_code", "invalid_rate", "bad_status / n_rows"),
             _row("validity", "event_time", "future_rate", "future / n_rows")]
    for i, s in enumerate(series):
        aggs += [f"avg({quote(s)}) AS mean_{i}", f"quantile_cont({quote(s)}, 0.95) AS p95_{i}",
                 f"count({quote(s)}) AS n_{i}"]
        rows += [_row("distribution", s, "mean", f"mean_{i}"),
                 _row("distribution", s, "p95", f"p95_{i}"),
                 _row("distribution", s, "values", f"n_{i}")]
    nested = sql_list(NESTED)
    files = values_table([(f,) for f in run_files], ("source_file",)) if run_files else \
        "SELECT CAST(NULL AS VARCHAR) AS source_file WHERE 1 = 0"
    steps = [
        Step("schema_events", schema_sql(columns())),
        Step("wide", f"SELECT date, hour, {', '.join(aggs)} FROM events GROUP BY date, hour",
             cache=True),
        Step("extra_keys", f"""
            SELECT date, hour, k AS field, count(*) AS n, min(extra) AS example
            FROM (SELECT date, hour, extra, unnest(json_keys(extra)) AS k
                  FROM events WHERE extra IS NOT NULL) AS keyed
            WHERE k NOT IN ({nested})
            GROUP BY date, hour, k
        """),
        Step("run_files", files),
        Step("lags", f"""
            SELECT epoch({_ts(now)}) - epoch(e.event_time) AS lag_s
            FROM events e JOIN run_files f ON f.source_file = e.source_file
        """),
        Step("fresh", """
            SELECT '*' AS date, '*' AS hour, quantile_cont(lag_s, 0.5) AS p50,
                   quantile_cont(lag_s, 0.95) AS p95, count(*) AS n
            FROM lags HAVING count(*) > 0
        """),
        Step("measures", " UNION ALL ".join([
            *rows,
            "SELECT date, hour, 'schema' AS chk, field AS col, 'new_field' AS metric, "
            "CAST(n AS DOUBLE) AS value, substr(example, 1, 200) AS detail FROM extra_keys",
            _row("freshness", "event_time", "lake_lag_p50_s", "p50", "fresh"),
            _row("freshness", "event_time", "lake_lag_p95_s", "p95", "fresh"),
        ])),
    ]
    return Plan("quality_partitions", tuple(steps), outputs=(), datasets=("events",))


def _pattern(name: str, value: str) -> str:
    return '"' + name + '"[ ]*:[ ]*' + value


def quarantine_plan() -> Plan:
    """Measure the lines bound as `quarantine` (this run's): counts by reason, and known
    fields given a value of the wrong JSON type, with examples."""
    typed = " UNION ALL ".join(
        f"SELECT {sql_str(name)} AS field, line FROM quarantine "
        f"WHERE reason = 'wrong_type' AND regexp_matches(line, {sql_str(_pattern(name, kind))})"
        for name, kind in TYPED_FIELDS)
    steps = [
        Step("schema_quarantine", schema_sql(QUARANTINE_COLUMNS)),
        Step("typed", typed),
        Step("measures", """
            SELECT '*' AS date, '*' AS hour, 'quarantine' AS chk, reason AS col,
                   'lines' AS metric, CAST(count(*) AS DOUBLE) AS value,
                   CAST(NULL AS VARCHAR) AS detail
            FROM quarantine GROUP BY reason
            UNION ALL
            SELECT '*' AS date, '*' AS hour, 'schema' AS chk, field AS col,
                   'retyped' AS metric, CAST(count(*) AS DOUBLE) AS value,
                   substr(min(line), 1, 300) AS detail
            FROM typed GROUP BY field
        """),
    ]
    return Plan("quality_quarantine", tuple(steps), outputs=(), datasets=("quarantine",))
