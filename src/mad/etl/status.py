"""`mad etl status`: recent runs, runs by status, the backlog of unread raw files, unreadable
raw files, days whose aggregates are due, and event ids reused across event hours.

It only looks: a lake folder or bucket that does not exist, or a state database that does
not, is one ConfigError line (`lake_store(must_exist=True)`, `open_state(create=False)`), so
a mistyped `--lake` or data folder is said so instead of shown as an empty lake, and nothing
is created.
"""

from __future__ import annotations

from mad.config import Settings
from mad.etl.discover import pending
from mad.etl.runner import PLAN
from mad.state import EtlLedger, UnreadableFiles, open_state
from mad.stores import ObjectStore, lake_store

COLUMNS = ("RUN", "STATUS", "FILES", "IN", "NEW", "DUPS", "QUARANTINED", "LATE", "REUSED",
           "UNREADABLE", "SECONDS", "ERROR")


def render(settings: Settings, limit: int = 10) -> str:
    store = lake_store(settings, must_exist=True)
    state = open_state(settings.state_url, create=False)
    try:
        return _render(settings, store, EtlLedger(state), UnreadableFiles(state), limit)
    finally:
        state.dispose()


def _render(settings: Settings, store: ObjectStore, ledger: EtlLedger,
            unreadable: UnreadableFiles, limit: int) -> str:
    done = ledger.done_keys(PLAN)
    backlog = pending(store, done)
    totals = ledger.totals()
    counted = ledger.count_totals(PLAN)
    waiting = [r for r in unreadable.all() if r["key"] not in done]
    due = ledger.aggregates_due(settings.etl.windows)
    lines = [
        f"runs: {', '.join(f'{n} {s}' for s, n in sorted(totals.items())) or 'none yet'}",
        f"backlog: {len(backlog)} raw files, {sum(f.bytes for f in backlog)} bytes not read yet",
        f"unreadable raw files: {counted.get('unreadable', 0)} quarantined whole, "
        f"{len(waiting)} waiting for another attempt",
    ]
    lines += [f"  {r['key']}: {r['attempts']} of {settings.etl.unreadable_attempts} attempts, "
              f"{r['reason']}" for r in waiting[:limit]]
    lines += [
        f"aggregates due: {len(due)} days" + (f" ({', '.join(list(due)[:5])}"
                                              f"{', ...' if len(due) > 5 else ''})" if due else ""),
        f"event ids reused across event hours (quarantined as reused_event_id): "
        f"{counted.get('reused', 0)}",
        "",
    ]
    runs = ledger.recent_runs(limit)
    extra = ledger.run_counts(r["run_id"] for r in runs)
    rows: list[tuple[str, ...]] = [COLUMNS]
    for r in runs:
        more = extra.get(r["run_id"], {})
        rows.append(tuple(str(x) if x is not None else "-" for x in (
            r["run_id"], r["status"], r["files_in"], r["rows_in"], r["rows_out"],
            r["duplicates"], r["quarantined"], r["late"], more.get("reused"),
            more.get("unreadable"),
            None if r["duration_s"] is None else f"{r['duration_s']:.1f}",
            (r["error"] or "")[:60] or None)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    failed = next((r for r in runs if r["status"] == "failed" and r["error"]), None)
    if failed is not None:  # the table cuts errors short; the latest is worth reading whole
        lines += ["", f"last failure: {failed['run_id']}: {failed['error']}"]
    return "\n".join(lines) + "\n"
