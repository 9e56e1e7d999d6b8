"""Staged quarantine rows whose raw line the live quarantine already holds, dropped.

`known_lines_plan()` reads two datasets:
- `staged`: a run's staged quarantine files (the `quarantine` output of `events_plan`), with
  the `date` / `hour` of their partition folders;
- `known`: the live quarantine files of the same partitions.

Its output `quarantine` (partition_by date, hour) holds the staged rows whose
`(source_file, line_no)` no known row has: a raw file never changes, so that pair names one
line, wherever the batch that read it again was cut. `count_staged` counts the rows it read.
Written once for every engine, as every plan is.
"""

from __future__ import annotations

from mad.etl.plan import Plan, Step
from mad.etl.transforms.events import schema_sql
from mad.etl.transforms.sql import quote

# The columns of `events_plan`'s quarantine output, in order, with its partition columns.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("reason", "VARCHAR"), ("line", "VARCHAR"), ("source_file", "VARCHAR"),
    ("line_no", "BIGINT"), ("ingest_hour", "TIMESTAMP"), ("date", "VARCHAR"),
    ("hour", "VARCHAR"),
)
KEY = (("source_file", "VARCHAR"), ("line_no", "BIGINT"))


def known_lines_plan() -> Plan:
    """The quarantine anti-join (see the module docstring)."""
    names = ", ".join(f"s.{quote(name)}" for name, _ in COLUMNS)
    steps = (
        Step("schema_staged", schema_sql(list(COLUMNS))),
        Step("schema_known", schema_sql(list(KEY))),
        Step("known_lines", "SELECT DISTINCT source_file, line_no FROM known"),
        Step("quarantine", f"""
            SELECT {names} FROM staged s
            ANTI JOIN known_lines k ON k.source_file = s.source_file AND k.line_no = s.line_no
        """, partition_by=("date", "hour")),
        Step("count_staged", "SELECT line_no FROM staged"),
    )
    return Plan("known_lines", steps, outputs=("quarantine",), datasets=("staged", "known"))
