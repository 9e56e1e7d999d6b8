"""`mad etl status`: recent runs, runs by status, and the backlog of unread raw files."""

from __future__ import annotations

from mad.config import Settings
from mad.etl.discover import pending
from mad.etl.runner import PLAN
from mad.state import EtlLedger, open_state
from mad.stores import lake_store


def render(settings: Settings, limit: int = 10) -> str:
    ledger = EtlLedger(open_state(settings.state_url))
    store = lake_store(settings)
    backlog = pending(store, ledger.done_keys(PLAN))
    totals = ledger.totals()
    lines = [
        f"runs: {', '.join(f'{n} {s}' for s, n in sorted(totals.items())) or 'none yet'}",
        f"backlog: {len(backlog)} raw files, {sum(f.bytes for f in backlog)} bytes not read yet",
        "",
    ]
    rows: list[tuple[str, ...]] = [
        ("RUN", "STATUS", "FILES", "IN", "NEW", "DUPS", "QUARANTINED", "LATE", "SECONDS", "ERROR")
    ]
    for r in ledger.recent_runs(limit):
        rows.append(tuple(str(x) if x is not None else "-" for x in (
            r["run_id"], r["status"], r["files_in"], r["rows_in"], r["rows_out"],
            r["duplicates"], r["quarantined"], r["late"],
            None if r["duration_s"] is None else f"{r['duration_s']:.1f}",
            (r["error"] or "")[:60] or None)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines) + "\n"
