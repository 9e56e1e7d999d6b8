"""Transformed events -> one row per window start x service x series, with an outlier score.

`aggregates_plan(window)` for `1m`, `5m` or `1h` reads two datasets of transformed-lake rows
(all kinds): `events`, every event of the days being (re)computed, and `history`, the events
just before them (at least `HISTORY_WINDOWS` windows) so that the first windows of a day have
history for their score. The output `aggregates` (partition_by window, date) holds only the
windows that start on a day present in `events`, so writing it replaces whole days.

Series: every catalog series (statistics over the values of the window), plus two derived
series with one value per window: `events` (number of events) and `error_rate` (share of log
and APM events at level ERROR). For those, avg = min = max = p50 = p95 = p99 = the value,
stddev = 0 and count = the events behind it. Percentiles are exact (`quantile_cont`,
linear interpolation between order statistics, as numpy's default); stddev is the sample
standard deviation (NULL for one value).

Outlier score: a robust z of the window's `avg` against the previous `HISTORY_WINDOWS`
windows of the same service and series: (avg - median) / (IQR / 1.349), with the scale floored
at 1% of |median| (and 1e-9) so a flat history does not divide by zero. `outlier` is true when
|score| > `OUTLIER_Z` and at least `MIN_HISTORY` earlier windows exist.
"""

from __future__ import annotations

from mad.etl.plan import Plan, Step
from mad.etl.transforms.events import columns, schema_sql
from mad.etl.transforms.sql import quote, series_names

WINDOWS: dict[str, int] = {"1m": 60, "5m": 300, "1h": 3600}
HISTORY_WINDOWS = 30
MIN_HISTORY = 8
OUTLIER_Z = 6.0
STATS = ("count", "avg", "min", "max", "stddev", "p50", "p95", "p99")


def window_start_sql(seconds: int, column: str = "event_time") -> str:
    """The start of the `seconds`-long window holding `column`, as a TIMESTAMP."""
    return (f"epoch_ms(CAST(floor(epoch({column}) / {seconds}) AS BIGINT)"
            f" * {seconds * 1000})")


def aggregates_plan(window: str) -> Plan:
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; known: {', '.join(WINDOWS)}")
    secs = WINDOWS[window]
    series = series_names()
    wanted = ", ".join(["event_time", "service", "kind", "level",
                        *(quote(s) for s in series)])
    unpivot = ", ".join(quote(s) for s in series)
    prev = (f"OVER (PARTITION BY service, series ORDER BY window_start"
            f" ROWS BETWEEN {HISTORY_WINDOWS} PRECEDING AND 1 PRECEDING)")
    steps = (
        Step("schema_events", schema_sql(columns())),
        Step("schema_history", schema_sql(columns())),
        Step("base", f"""
            SELECT {window_start_sql(secs)} AS window_start, {wanted}
            FROM (SELECT {wanted} FROM events
                  UNION ALL SELECT {wanted} FROM history) AS t
        """, cache=True),
        Step("days", "SELECT DISTINCT date FROM events"),
        Step("points", f"""
            SELECT window_start, service, series, value
            FROM (SELECT window_start, service, {unpivot} FROM base)
            UNPIVOT (value FOR series IN ({unpivot}))
        """),
        Step("value_stats", """
            SELECT window_start, service, series,
                   count(*) AS "count", avg(value) AS avg, min(value) AS min,
                   max(value) AS max, stddev_samp(value) AS stddev,
                   quantile_cont(value, 0.5) AS p50, quantile_cont(value, 0.95) AS p95,
                   quantile_cont(value, 0.99) AS p99
            FROM points GROUP BY window_start, service, series
        """),
        Step("derived", """
            SELECT window_start, service, 'events' AS series, count(*) AS n,
                   CAST(count(*) AS DOUBLE) AS value
            FROM base GROUP BY window_start, service
            UNION ALL
            SELECT window_start, service, 'error_rate' AS series, count(*) AS n,
                   avg(CASE WHEN level = 'ERROR' THEN CAST(1 AS DOUBLE)
                            ELSE CAST(0 AS DOUBLE) END) AS value
            FROM base WHERE kind IN ('log', 'apm') GROUP BY window_start, service
        """),
        Step("windows", """
            SELECT window_start, service, series, "count", avg, min, max, stddev, p50, p95, p99
            FROM value_stats
            UNION ALL
            SELECT window_start, service, series, n AS "count", value AS avg, value AS min,
                   value AS max, 0.0 AS stddev, value AS p50, value AS p95, value AS p99
            FROM derived
        """, cache=True),
        Step("scored", f"""
            SELECT *, median(avg) {prev} AS hist_median,
                   quantile_cont(avg, 0.75) {prev} - quantile_cont(avg, 0.25) {prev} AS hist_iqr,
                   count(avg) {prev} AS hist_n
            FROM windows
        """),
        Step("aggregates", f"""
            SELECT s.window_start, s.service, s.series,
                   s."count", s.avg, s.min, s.max, s.stddev, s.p50, s.p95, s.p99,
                   CASE WHEN s.hist_n >= {MIN_HISTORY} THEN (s.avg - s.hist_median)
                        / greatest(s.hist_iqr / 1.349, 0.01 * abs(s.hist_median), 1e-9) END
                       AS outlier_score,
                   COALESCE(s.hist_n >= {MIN_HISTORY} AND abs((s.avg - s.hist_median)
                        / greatest(s.hist_iqr / 1.349, 0.01 * abs(s.hist_median), 1e-9))
                        > {OUTLIER_Z}, false) AS outlier,
                   '{window}' AS "window",
                   strftime(s.window_start, '%Y-%m-%d') AS date
            FROM scored s JOIN days d ON strftime(s.window_start, '%Y-%m-%d') = d.date
        """, partition_by=("window", "date")),
    )
    return Plan(f"aggregates_{window}", steps, outputs=("aggregates",),
                datasets=("events", "history"))
