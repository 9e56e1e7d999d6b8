"""`mad etl status`: recent runs, runs by status, the backlog of unread raw files, unreadable
raw files, days whose aggregates are due, and event ids reused across event hours.

The data is `mad.query.etl.etl_status` (the dashboard reads the same); this module prints it.
It only looks: a lake folder or bucket that does not exist, or a state database that does
not, is one ConfigError line (`lake_store(must_exist=True)`, `open_state(create=False)`), so
a mistyped `--lake` or data folder is said so instead of shown as an empty lake, and nothing
is created.
"""

from __future__ import annotations

from typing import Any

from mad.config import Settings
from mad.query.etl import etl_status
from mad.words import plural

COLUMNS = ("RUN", "STATUS", "FILES", "IN", "NEW", "DUPS", "QUARANTINED", "LATE", "REUSED",
           "UNREADABLE", "SECONDS", "ERROR")


def render(settings: Settings, limit: int = 10) -> str:
    return render_data(etl_status(settings, limit), limit)


def render_data(data: dict[str, Any], limit: int = 10) -> str:
    """The text of `mad etl status` from `etl_status` data."""
    totals = data["runs_by_status"]
    waiting = data["unreadable_waiting"]
    due = data["aggregates_due"]
    lines = [
        f"runs: {', '.join(f'{n} {s}' for s, n in sorted(totals.items())) or 'none yet'}",
        f"backlog: {plural(data['backlog_files'], 'raw file')}, {data['backlog_bytes']} bytes "
        "not read "
        "yet",
        f"unreadable raw files: {data['unreadable_quarantined']} quarantined whole, "
        f"{len(waiting)} waiting for another attempt",
    ]
    lines += [f"  {r['key']}: {r['attempts']} of {data['unreadable_attempts']} attempts, "
              f"{r['reason']}" for r in waiting[:limit]]
    lines += [
        f"aggregates due: {plural(len(due), 'day')}" + (f" ({', '.join(list(due)[:5])}"
                                              f"{', ...' if len(due) > 5 else ''})" if due else ""),
        f"event ids reused across event hours (quarantined as reused_event_id): "
        f"{data['reused']}",
        "",
    ]
    runs = data["runs"]
    rows: list[tuple[str, ...]] = [COLUMNS]
    for r in runs:
        rows.append(tuple(str(x) if x is not None else "-" for x in (
            r["run_id"], r["status"], r["files_in"], r["rows_in"], r["rows_out"],
            r["duplicates"], r["quarantined"], r["late"], r["reused"], r["unreadable"],
            None if r["duration_s"] is None else f"{r['duration_s']:.1f}",
            (r["error"] or "")[:60] or None)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    failed = next((r for r in runs if r["status"] == "failed" and r["error"]), None)
    if failed is not None:  # the table cuts errors short; the latest is worth reading whole
        lines += ["", f"last failure: {failed['run_id']}: {failed['error']}"]
    return "\n".join(lines) + "\n"
