"""Transformed events -> how far each source's events have reached (`mad.state.event_clocks`).

`clocks_plan()` reads `events`, the transformed-lake rows of one event day (all kinds), and
returns, per source (kind x service x host; a missing host is ''), the newest event time in
epoch seconds, each event's time capped at the end of its ingest hour (received in hour H,
it cannot have happened after H + 1 h: a host dated hours ahead moves its clock at most to
the end of the hour it was received in), the newest ingest hour (epoch seconds of its start)
and how many events. At most `MAX_SOURCES` sources, the busiest first: a flood of made-up host
names cannot make the result large.

Times are returned as epoch seconds so that both engines hand back the same plain numbers.
"""

from __future__ import annotations

from mad.etl.plan import Plan, Step
from mad.etl.transforms.events import schema_sql

MAX_SOURCES = 10_000
COLUMNS = [("event_time", "TIMESTAMP"), ("kind", "VARCHAR"), ("service", "VARCHAR"),
           ("host", "VARCHAR"), ("ingest_hour", "TIMESTAMP")]


def clocks_plan() -> Plan:
    steps = (
        Step("schema_events", schema_sql(COLUMNS)),
        Step("stamped", """
            SELECT kind, service, COALESCE(host, '') AS host,
                   CASE WHEN ingest_hour IS NULL THEN epoch(event_time)
                        ELSE least(epoch(event_time), epoch(ingest_hour) + 3600) END AS t,
                   epoch(ingest_hour) AS ingest
            FROM events
            WHERE event_time IS NOT NULL AND kind IS NOT NULL AND service IS NOT NULL
        """),
        Step("clocks", f"""
            SELECT kind, service, host, max(t) AS newest_event, max(ingest) AS newest_ingest,
                   count(*) AS events
            FROM stamped GROUP BY kind, service, host
            ORDER BY events DESC, kind, service, host
            LIMIT {MAX_SOURCES}
        """),
    )
    return Plan("clocks", steps, outputs=(), datasets=("events",))
