"""Raw JSONL lines -> flat typed events, with validation, quarantine and deduplication.

`events_plan()` reads `raw_lines(line, source_file, line_no, ingest_hour)` and two datasets:
`existing`, the full rows already in the transformed-lake partitions this run touches (bind
them all, see `partitions_plan`), and `horizon`, the `event_id`s of the dataset's other
partitions within the dedup horizon (`etl.dedup_horizon_hours` of event time around the
touched ones; unbound or empty: none). Outputs:

- `events` (partition_by date, hour of the EVENT time, UTC): the new events merged with the
  existing rows of every partition that receives at least one new event. Writing it replaces
  those partitions whole, so the lake never holds an `event_id` twice and re-running a run
  rewrites nothing (no new events -> no partition in the output).
- `quarantine` (partition_by date, hour of the INGEST hour, `unknown` when the raw file is
  outside the raw-lake layout): every line that is not a valid event, with its `reason` code
  (the codes of `mad.events.check`, plus `invalid_json`, `duplicate_key` and
  `reused_event_id`), the raw `line`, `source_file`, `line_no`; and one row per raw file
  given as `unreadable` (reason `unreadable_file`, `line` NULL, `line_no` 0: the whole file).

Which copy of an `event_id` is kept: the one already in the lake (`existing` or `horizon`),
else the earliest in the input (earliest ingest hour, then file, then line). Every other
valid copy is dropped as a duplicate when it falls in the same event hour as the kept one
(a re-send: same event, same timestamp), and quarantined as `reused_event_id` when it falls
in another hour (the id names a different event; nothing is dropped on a guess).

A line that gives an identity field (`event_id`, `timestamp`, `service`, `event_type`,
`kind`) twice at its top level is quarantined as `duplicate_key`, the rule of the ingest API
(`mad.ingest.duplicates`): JSON readers disagree on which value counts (DuckDB keeps the
first, Spark and the API the last). The keys are names after unescaping, as the API reads
them.

Counts (the row count of each `count_*` step): `count_in` non-blank lines read;
`count_quarantined` (reused ids included); `count_duplicates` valid lines dropped as
duplicates; `count_reused` lines quarantined as `reused_event_id`; `count_unreadable` raw
files quarantined whole; `count_new` events written; `count_late` new events whose event time
is more than one hour before the start of their ingest hour (the raw partition they arrived
in), i.e. at least one full hour late; `count_late_arrival` and `count_skewed` (see
`mad.etl.transforms.arrival`): new events that arrived more than ten minutes behind their
file's running newest event time, and events of hosts whose clock runs off their file's median by
more than 15 s (an upper bound: on a service with two hosts, the partner of a skewed host
can look skewed too). Blank lines are skipped and not counted.
`count_in = count_new + count_duplicates + count_quarantined` always holds.

Validation mirrors `mad.events.check`. Where SQL over JSON text cannot tell types apart the
way Python does, the result is documented here: a numeric string in `metrics` counts as a
number, and `event_id` must appear as a JSON string (checked by pattern on the raw line).

Each line's top-level values are read by ONE `json_transform` to a STRUCT of text (Spark:
`from_json`), each nested object with flat columns by one more over its small text.
`extra` is compact JSON text; engines agree on its JSON VALUE, not always on its text
(nested key order and number spelling can differ), so compare it parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mad.catalog import EVENT_TYPES, KINDS
from mad.etl.plan import Plan, Step
from mad.etl.transforms.arrival import arrival_steps
from mad.etl.transforms.sql import (
    TIMESTAMP_SQL,
    quote,
    series_names,
    sql_list,
    sql_str,
    values_table,
)

# Flat columns taken from the nested event: (column, JSON path, SQL type).
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("level", "$.level", "VARCHAR"),
    ("host", "$.host", "VARCHAR"),
    ("message", "$.message", "VARCHAR"),
    ("trace_id", "$.trace.trace_id", "VARCHAR"),
    ("span_id", "$.trace.span_id", "VARCHAR"),
    ("user_id", "$.context.user_id", "VARCHAR"),
    ("request_id", "$.context.request_id", "VARCHAR"),
    ("session_id", "$.context.session_id", "VARCHAR"),
    ("client_ip", "$.context.client_ip", "VARCHAR"),
    ("country", "$.context.geo.country", "VARCHAR"),
    ("city", "$.context.geo.city", "VARCHAR"),
    ("status_code", "$.context.status_code", "BIGINT"),
    ("error_code", "$.error.code", "VARCHAR"),
    ("error_type", "$.error.type", "VARCHAR"),
    ("error_message", "$.error.message", "VARCHAR"),
)
ENVELOPE = ("event_id", "timestamp", "service", "event_type", "kind")
IDENTITY_FIELDS = ENVELOPE  # a record may give none of these twice (`duplicate_key`)
NESTED = ("trace", "context", "metrics", "error")
LATE_AFTER = "INTERVAL 1 HOUR"


def columns() -> list[tuple[str, str]]:
    """The transformed-lake schema, in order: (name, DuckDB type)."""
    cols = [("event_id", "VARCHAR"), ("event_time", "TIMESTAMP"), ("service", "VARCHAR"),
            ("event_type", "VARCHAR"), ("kind", "VARCHAR")]
    cols += [(name, typ) for name, _, typ in FIELDS]
    cols += [(name, "DOUBLE") for name in series_names()]
    cols += [("extra", "VARCHAR"), ("ingest_hour", "TIMESTAMP"), ("source_file", "VARCHAR"),
             ("date", "VARCHAR"), ("hour", "VARCHAR")]
    return cols


def schema_sql(cols: list[tuple[str, str]]) -> str:
    """A typed, empty SELECT with these columns (the `schema_<dataset>` convention)."""
    body = ", ".join(f"CAST(NULL AS {typ}) AS {quote(name)}" for name, typ in cols)
    return f"SELECT {body} WHERE 1 = 0"


def _extra_patch() -> str:
    """A JSON merge patch that deletes every field the flat columns already hold."""
    import json

    patch: dict[str, object] = {name: None for name in ENVELOPE}
    patch.update({"level": None, "host": None, "message": None})
    nested: dict[str, dict[str, object]] = {n: {} for n in NESTED}
    for _col, path, _typ in FIELDS:
        parts = path[2:].split(".")
        if len(parts) == 2:
            nested[parts[0]][parts[1]] = None
    nested["context"]["geo"] = {"country": None, "city": None}
    nested["metrics"] = {name: None for name in series_names()}
    patch.update(nested)
    return json.dumps(patch, separators=(",", ":"))


def _extra_sql() -> str:
    """`extra`: the event minus its flat columns (unknown fields, the rest of `context`, ...);
    objects left empty are dropped, and NULL when nothing is left.

    An emptied member goes with the comma before it, or after it when it is first in its
    object, in one regex pass; a second pass drops `context` once `geo` left it empty."""
    empty = '"(geo|context|trace|error|metrics)":[{][}]'
    expr = f"CAST(json_merge_patch(doc, {sql_str(_extra_patch())}) AS VARCHAR)"
    for _ in range(2):
        expr = f"regexp_replace({expr}, '{empty},|,?{empty}', '', 'g')"
    return f"NULLIF({expr}, '{{}}')"


def _lines_step() -> Step:
    return Step("lines", """
        SELECT line, source_file, line_no, ingest_hour,
               CASE WHEN json_valid(line) AND left(ltrim(line), 1) = '{' THEN line END AS doc,
               json_valid(line) AS is_json
        FROM raw_lines
        WHERE regexp_matches(line, '[^ \t\r\n]')
    """)


def _struct_spec(names: tuple[str, ...] | list[str]) -> str:
    """A `json_transform` spec: a STRUCT of these fields, each as VARCHAR (a string value
    unquoted, any other value as its compact JSON text, as `json_extract_string`)."""
    import json

    return sql_str(json.dumps({name: "VARCHAR" for name in names}, separators=(",", ":")))


TOP_FIELDS = ("event_id", "event_type", "kind", "timestamp", "service", "level", "host",
              "message", *NESTED)


def _identity_keys_sql() -> str:
    """The identity fields among the object's top-level keys, repeats kept (`json_keys` lists
    every key as written, unescaped: `"event\\u005fid"` is `event_id`). Listing the keys of
    every line measured cheaper than any text prefilter that could skip it: a LIKE per name
    (`%"kind"%"kind"%`) scans the line once each, and `_` in a name makes LIKE slow."""
    return (f"CASE WHEN doc IS NOT NULL THEN list_filter(json_keys(doc), "
            f"k -> k IN ({sql_list(IDENTITY_FIELDS)})) END")


def _top_step() -> Step:
    """Every top-level value as text from ONE parse of the line (`json_transform` to a STRUCT,
    Spark `from_json`): later steps parse only the small nested objects."""
    tops = ", ".join(f"t.{quote(n)} AS {n}_raw" for n in TOP_FIELDS[3:])
    return Step("top", f"""
        SELECT source_file, line_no, ingest_hour, doc IS NOT NULL AS is_object, is_json,
               COALESCE(array_length(id_keys) > array_length(list_distinct(id_keys)), false)
                   AS dup_key,
               t.event_id AS event_id,
               regexp_matches(doc, '"event_id"[ ]*:[ ]*"') AS id_is_text,
               t.event_type AS event_type, t.kind AS kind,
               {tops},
               {_extra_sql()} AS extra
        FROM (SELECT *, json_transform(doc, {_struct_spec(TOP_FIELDS)}) AS t,
                     {_identity_keys_sql()} AS id_keys
              FROM lines) AS parsed
    """, cache=True)


def _obj(name: str) -> str:
    """A nested value's text when it is an object (else NULL: JSON paths into it fail)."""
    return f"CASE WHEN left({name}_raw, 1) = '{{' THEN {name}_raw END"


def _metric_text_step() -> Step:
    """Each series' text from the `metrics` object, parsed once (checked and cast next), and
    the nested objects holding flat columns, each parsed once into a STRUCT."""
    metrics = _obj("metrics")
    texts = ",\n".join(f"m.{quote(s)} AS {_text(s)}" for s in series_names())
    nested = ", ".join(
        f"json_transform({_obj(n)}, {_struct_spec(_nested_keys(n))}) AS {n}_obj"
        for n in NESTED if _nested_keys(n)
    )
    return Step("metric_text", f"""
        SELECT *, {texts}
        FROM (SELECT *, json_transform({metrics}, {_struct_spec(series_names())}) AS m,
                     {nested}
              FROM top) AS parsed
    """)


def _nested_keys(name: str) -> list[str]:
    """The keys of nested object `name` that flat columns read (`geo` as its JSON text)."""
    keys = [path[2:].split(".")[1] for _c, path, _t in FIELDS if path.startswith(f"$.{name}.")]
    return list(dict.fromkeys(keys))


def _text(series: str) -> str:
    return quote(f"text__{series}")


def _fields_step() -> Step:
    series = series_names()

    def metric(s: str) -> str:
        return _text(s)

    metric_cols = ",\n".join(f"TRY_CAST({metric(s)} AS DOUBLE) AS {quote(s)}" for s in series)
    bad_metric = " OR ".join(
        f"({metric(s)} IS NOT NULL AND TRY_CAST({metric(s)} AS DOUBLE) IS NULL)" for s in series
    )
    bad_nested = " OR ".join(
        f"({n}_raw IS NOT NULL AND left({n}_raw, 1) <> '{{')" for n in NESTED
    )
    flat = []
    for name, path, typ in FIELDS:
        parts = path[2:].split(".")
        if len(parts) == 1:
            expr = f"{parts[0]}_raw"
        else:
            expr = f"{parts[0]}_obj.{quote(parts[1])}"
            if len(parts) == 3:
                expr = f"json_extract_string({expr}, '$.{parts[2]}')"
        flat.append(f"TRY_CAST({expr} AS {typ}) AS {name}" if typ != "VARCHAR"
                    else f"{expr} AS {name}")
    return Step("fields", f"""
        SELECT source_file, line_no, ingest_hour, is_object, is_json, dup_key, event_id,
               id_is_text,
               timestamp_raw AS ts_raw, service_raw, event_type, kind,
               {TIMESTAMP_SQL.format(raw="timestamp_raw")} AS event_time,
               ({bad_nested}) AS bad_nested,
               ({bad_metric}) AS bad_metric,
               {", ".join(flat)},
               {metric_cols},
               extra
        FROM metric_text
    """)


def _reason_sql(kind: str | None) -> str:
    kinds = sql_list(KINDS)
    wrong_dataset = f"WHEN f.kind <> {sql_str(kind)} THEN 'kind_mismatch'" if kind else ""
    return f"""CASE
        WHEN NOT f.is_json THEN 'invalid_json'
        WHEN NOT f.is_object THEN 'not_an_object'
        WHEN f.dup_key THEN 'duplicate_key'
        WHEN f.event_id IS NULL OR f.ts_raw IS NULL OR f.event_type IS NULL OR f.kind IS NULL
            THEN 'missing_field'
        WHEN NOT f.id_is_text OR f.event_id = '' OR length(f.event_id) > 128
            OR f.event_type = '' OR f.kind = '' THEN 'wrong_type'
        WHEN c.event_type IS NULL THEN 'unknown_event_type'
        WHEN f.kind NOT IN ({kinds}) THEN 'wrong_type'
        WHEN f.kind <> c.kind THEN 'kind_mismatch'
        {wrong_dataset}
        WHEN f.service_raw IS NULL AND c.default_service = '' THEN 'missing_field'
        WHEN f.service_raw IS NOT NULL AND s.service IS NULL THEN 'unknown_service'
        WHEN f.ts_raw IN ('true', 'false') OR left(f.ts_raw, 1) IN ('{{', '[')
            THEN 'wrong_type'
        WHEN f.event_time IS NULL THEN 'bad_timestamp'
        WHEN f.bad_nested OR f.bad_metric THEN 'wrong_type'
    END"""


def _catalog_steps() -> list[Step]:
    types = [(t.name, t.kind, t.services[0] if len(t.services) == 1 else "") for t in EVENT_TYPES]
    pairs = [(t.name, s) for t in EVENT_TYPES for s in t.services]
    return [
        Step("catalog_types", values_table(types, ("event_type", "kind", "default_service"))),
        Step("catalog_services", values_table(pairs, ("event_type", "service"))),
    ]


def _unreadable_step(files: Sequence[tuple[str, datetime | None]]) -> Step:
    """The raw files quarantined whole, with their ingest hours."""
    if not files:
        return Step("unreadable_files", "SELECT CAST(NULL AS VARCHAR) AS source_file, "
                    "CAST(NULL AS TIMESTAMP) AS ingest_hour WHERE 1 = 0")
    rows = ", ".join(
        f"({sql_str(path)}, " + (f"CAST({sql_str(f'{hour:%Y-%m-%d %H:%M:%S}')} AS TIMESTAMP)"
                                 if hour is not None else "CAST(NULL AS TIMESTAMP)") + ")"
        for path, hour in files)
    return Step("unreadable_files",
                f"SELECT * FROM (VALUES {rows}) AS t(source_file, ingest_hour)")


def _dedup_steps() -> list[Step]:
    """Which valid copy of each `event_id` is kept, and why each other copy is not (see the
    module docstring). Ranking works on a NARROW table (the key and where each copy came
    from), then the winning rows are picked by that key: a window over all ~60 columns costs
    several times more. `dropped` is small (the copies not kept), so it is kept too. The
    horizon's ids are looked up once, as a semi-join (no DISTINCT over them)."""
    order = "PARTITION BY event_id ORDER BY ingest_hour, source_file, line_no"
    return [
        Step("ranked", f"""
            SELECT event_id, source_file, line_no, ingest_hour,
                   date_trunc('hour', event_time) AS event_hour,
                   row_number() OVER ({order}) AS copy_no,
                   first_value(date_trunc('hour', event_time)) OVER ({order}) AS first_hour,
                   event_id IN (SELECT event_id FROM horizon) AS in_horizon
            FROM checked WHERE reason IS NULL
        """, cache=True),
        Step("known_ids", """
            SELECT event_id, min(date || ' ' || hour) AS known_hour FROM existing
            GROUP BY event_id
        """),
        Step("dropped", """
            SELECT r.source_file, r.line_no, r.ingest_hour, CASE
                WHEN r.copy_no > 1 AND r.event_hour <> r.first_hour THEN 'reused'
                WHEN r.in_horizon THEN 'reused'
                WHEN k.event_id IS NOT NULL
                     AND k.known_hour <> strftime(r.event_hour, '%Y-%m-%d %H') THEN 'reused'
                ELSE 'duplicate' END AS verdict
            FROM ranked r LEFT JOIN known_ids k ON k.event_id = r.event_id
            WHERE r.copy_no > 1 OR k.event_id IS NOT NULL OR r.in_horizon
        """, cache=True),
        Step("winners", """
            SELECT r.source_file, r.line_no
            FROM ranked r LEFT JOIN known_ids k ON k.event_id = r.event_id
            WHERE r.copy_no = 1 AND k.event_id IS NULL AND NOT r.in_horizon
        """),
    ]


def events_plan(kind: str | None = None,
                unreadable: Sequence[tuple[str, datetime | None]] = ()) -> Plan:
    """The events transform; with `kind`, valid events of another kind are quarantined
    (`kind_mismatch`), for runs over one raw dataset such as `md-raw-logs`. `unreadable`
    names raw files (paths as the engine reads them, with their ingest hours) that are not
    read but quarantined whole."""
    cols = columns()
    names = ", ".join(quote(name) for name, _ in cols)
    derived = {"date": "strftime(f.event_time, '%Y-%m-%d') AS date",
               "hour": "strftime(f.event_time, '%H') AS hour"}
    fresh_cols = ", ".join(derived.get(c, f"f.{quote(c)}") for c, _ in cols)
    ingest_day = "COALESCE(strftime({t}.ingest_hour, '%Y-%m-%d'), 'unknown') AS date"
    ingest_hh = "COALESCE(strftime({t}.ingest_hour, '%H'), 'unknown') AS hour"
    steps = [
        Step("schema_existing", schema_sql(cols)),
        Step("schema_horizon", schema_sql([("event_id", "VARCHAR")])),
        *_catalog_steps(),
        _lines_step(),
        _top_step(),
        _metric_text_step(),
        _fields_step(),
        Step("checked", f"""
            SELECT f.*, {_reason_sql(kind)} AS reason,
                   COALESCE(f.service_raw, c.default_service) AS service
            FROM fields f
            LEFT JOIN catalog_types c ON c.event_type = f.event_type
            LEFT JOIN catalog_services s
                   ON s.event_type = f.event_type AND s.service = f.service_raw
        """, cache=True),
        *_dedup_steps(),
        _unreadable_step(unreadable),
        Step("quarantine", f"""
            SELECT q.reason, l.line, q.source_file, q.line_no, q.ingest_hour,
                   {ingest_day.format(t="q")}, {ingest_hh.format(t="q")}
            FROM (SELECT reason, source_file, line_no, ingest_hour FROM checked
                  WHERE reason IS NOT NULL
                  UNION ALL
                  SELECT 'reused_event_id' AS reason, source_file, line_no, ingest_hour
                  FROM dropped WHERE verdict = 'reused') AS q
            JOIN raw_lines l ON l.source_file = q.source_file AND l.line_no = q.line_no
            UNION ALL
            SELECT 'unreadable_file' AS reason, CAST(NULL AS VARCHAR) AS line, u.source_file,
                   CAST(0 AS BIGINT) AS line_no, u.ingest_hour,
                   {ingest_day.format(t="u")}, {ingest_hh.format(t="u")}
            FROM unreadable_files u
        """, partition_by=("date", "hour")),
        Step("fresh", f"""
            SELECT {fresh_cols}
            FROM checked f
            JOIN winners w ON w.source_file = f.source_file AND w.line_no = f.line_no
        """, cache=True),
        Step("touched", "SELECT DISTINCT date, hour FROM fresh"),
        Step("events", f"""
            SELECT {names} FROM fresh
            UNION ALL
            SELECT {", ".join(f"e.{quote(c)}" for c, _ in cols)}
            FROM existing e JOIN touched t ON e.date = t.date AND e.hour = t.hour
        """, partition_by=("date", "hour")),
        Step("count_in", "SELECT line_no FROM lines"),
        Step("count_quarantined", """
            SELECT line_no FROM checked WHERE reason IS NOT NULL
            UNION ALL SELECT line_no FROM dropped WHERE verdict = 'reused'
        """),
        Step("count_duplicates", "SELECT line_no FROM dropped WHERE verdict = 'duplicate'"),
        Step("count_reused", "SELECT line_no FROM dropped WHERE verdict = 'reused'"),
        Step("count_unreadable", "SELECT source_file FROM unreadable_files"),
        Step("count_new", "SELECT event_id FROM fresh"),
        Step("count_late", f"""
            SELECT event_id FROM fresh WHERE event_time < ingest_hour - {LATE_AFTER}
        """),
        *arrival_steps(),
    ]
    return Plan("events", tuple(steps), outputs=("events", "quarantine"),
                datasets=("existing", "horizon"))


def partitions_plan() -> Plan:
    """The event-time partitions (`date`, `hour`) the lines could touch: run it first, then
    bind `existing` of `events_plan` to the files of exactly these partitions."""
    steps = (
        _lines_step(),
        # Extracted once and kept: the timestamp expression reads its input several times.
        Step("stamp_text", """
            SELECT json_extract_string(doc, '$.timestamp') AS ts FROM lines
            WHERE doc IS NOT NULL
        """, cache=True),
        Step("stamps", f"SELECT {TIMESTAMP_SQL.format(raw='ts')} AS event_time FROM stamp_text"),
        Step("partitions", """
            SELECT DISTINCT strftime(event_time, '%Y-%m-%d') AS date,
                   strftime(event_time, '%H') AS hour
            FROM stamps WHERE event_time IS NOT NULL
        """),
    )
    return Plan("partitions", steps, outputs=("partitions",))
