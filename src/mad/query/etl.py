"""Stage 02 as the operator sees it: runs by status, the recent runs with their counts, the
backlog of raw files not read yet, unreadable raw files, days whose aggregates are due.
`mad etl status` prints it.

Only looks: a missing lake or state database is a ConfigError (nothing is created).
"""

from __future__ import annotations

from typing import Any

from mad.config import Settings
from mad.etl.discover import pending
from mad.etl.runner import PLAN
from mad.query.access import open_lake, state_db
from mad.state import EtlLedger, UnreadableFiles


def etl_status(settings: Settings, limit: int = 10) -> dict[str, Any]:
    """`runs_by_status` (status -> runs), `backlog_files` and `backlog_bytes` (raw files no
    succeeded run has read), `unreadable_quarantined` (raw files given up on and quarantined
    whole), `unreadable_waiting` (files found unreadable that wait for another attempt:
    key, attempts, reason, first_at, last_at), `unreadable_attempts` (the limit),
    `aggregates_due` (day -> windows not current), `reused` (event ids reused across event
    hours), and `runs`: the newest `limit` runs, each with `reused` and `unreadable`."""
    store = open_lake(settings)
    with state_db(settings) as engine:
        ledger, unreadable = EtlLedger(engine), UnreadableFiles(engine)
        done = ledger.done_keys(PLAN)
        backlog = pending(store, done)
        counted = ledger.count_totals(PLAN)
        runs = ledger.recent_runs(limit)
        extra = ledger.run_counts(r["run_id"] for r in runs)
        return {
            "runs_by_status": ledger.totals(),
            "backlog_files": len(backlog),
            "backlog_bytes": sum(f.bytes for f in backlog),
            "unreadable_quarantined": counted.get("unreadable", 0),
            "unreadable_waiting": [r for r in unreadable.all() if r["key"] not in done],
            "unreadable_attempts": settings.etl.unreadable_attempts,
            "aggregates_due": {day: windows for day, (_, windows)
                               in ledger.aggregates_due(settings.etl.windows).items()},
            "reused": counted.get("reused", 0),
            "runs": [{**{str(k): v for k, v in r.items()},
                      "reused": extra.get(r["run_id"], {}).get("reused"),
                      "unreadable": extra.get(r["run_id"], {}).get("unreadable")}
                     for r in runs],
        }
