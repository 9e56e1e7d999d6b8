"""How events arrived, measured inside the events plan (the one place raw lines are read in
order): late events and hosts whose clocks are off.

A raw file holds one service's records in the order they reached the stream. For every
valid line (`checked` with no reason) the steps compare its event time with its neighbours
in that order:

- late: more than `LATE_S` (10 min) older than the newest event time of the lines before it
  in the file, i.e. what a consumer tracking the highest event time seen would call late (the
  generator's late events are 15 min to hours behind; clock skew, reordering and re-sends stay
  far below 10 min). A late line that opens a file has nothing before it and is not counted:
  the count can fall short of the truth by at most one per raw file.
- skewed: lines of hosts whose median offset from the running median event time of their file
  (`WINDOW` lines either side) is more than `SKEW_S` (15 s) either way, counting every line of
  such a host. Lines over `LATE_S` off are left out of the host's median, so late events do
  not make a host look skewed.

Both are `count_*` steps, so every engine returns them with the run's other counts and they
cost no extra read of the raw data.
"""

from __future__ import annotations

from mad.etl.plan import Step

LATE_S = 600
SKEW_S = 15
WINDOW = 25


def arrival_steps() -> list[Step]:
    frame = f"ROWS BETWEEN {WINDOW} PRECEDING AND {WINDOW} FOLLOWING"
    order = "PARTITION BY source_file ORDER BY line_no"
    return [
        Step("arrival", f"""
            SELECT host,
                   e - median(e) OVER ({order} {frame}) AS offset_s,
                   max(e) OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                       - e AS behind_s
            FROM (SELECT host, source_file, line_no, epoch(event_time) AS e
                  FROM checked WHERE reason IS NULL) AS valid
        """, cache=True),
        Step("skewed_hosts", f"""
            SELECT host FROM arrival
            WHERE host IS NOT NULL AND abs(offset_s) < {LATE_S}
            GROUP BY host HAVING abs(median(offset_s)) > {SKEW_S}
        """),
        Step("count_late_arrival", f"SELECT host FROM arrival WHERE behind_s > {LATE_S}"),
        Step("count_skewed", """
            SELECT a.host FROM arrival a JOIN skewed_hosts s ON s.host = a.host
        """),
    ]
