"""`mad ingest status`: the stream's shards and lag, the raw writer's health, and what it
has written (the raw files ledger).

`collect` is `mad.query.ingest.ingest_status` (the dashboard reads the same); `render`
prints it for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mad.query.ingest import ingest_status as collect
from mad.words import plural

STALE_REPORT_S = 10.0
"""A writer that has not reported for this long is probably not running."""

__all__ = ["STALE_REPORT_S", "collect", "render"]


def _writer_lines(writer: dict[str, Any] | None) -> list[str]:
    if writer is None:
        return ["raw writer: no health report here (not run from this data folder yet)"]
    stale = " (is it running?)" if writer["age_s"] > STALE_REPORT_S else ""
    out = [f"raw writer: pid {writer['pid']}, last report {writer['age_s']:.1f} s ago{stale}, "
           f"{plural(writer['files'], 'file')} written"]
    failing, failures = writer["failing"], writer["failures"]
    names = {"lake": "lake writes", "stream": "stream reads or commits",
             "state": "state database"}
    for target, message in sorted(failing.items()):
        out.append(f"  {names.get(target, target)} failing "
                   f"({plural(failures.get(target, 0), 'failure')}, retrying): {message}")
    if writer["unrecorded_files"]:
        out.append("  files in the lake that wait to be recorded in the state database: "
                   f"{writer['unrecorded_files']}")
    return out


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render(data: dict[str, Any]) -> str:
    """Plain-text tables (readable in a terminal and in logs)."""
    out = [f"stream: {data['stream']['backend']}, {_size(data['stream']['disk_bytes'])} on disk,"
           f" {plural(data['stream']['dropped_records'], 'record')} dropped by retention budget",
           ""]
    leased = any(r.get("writer") for r in data["shards"])
    rows: list[tuple[str, ...]] = [
        ("SHARD", "LAST", "CHECKPOINT", "LAG RECORDS", "LAG BYTES", "LAG AGE")
        + (("WRITER", "LEASE UNTIL (UTC)") if leased else ())
    ]
    for r in data["shards"]:
        age = r["lag_seconds"]
        row: tuple[str, ...] = (str(r["shard"]), str(r["last"]), str(r["committed"]),
                                str(r["lag_records"]), _size(r["lag_bytes"]),
                                "-" if age is None else f"{age:.1f} s")
        if leased:
            until = r.get("lease_expires")
            row += (r.get("writer") or "(none)", until.astimezone(UTC).strftime(
                "%H:%M:%S") if isinstance(until, datetime) else "-")
        rows.append(row)
    out += [*_table(rows), "", *_writer_lines(data["writer"]), "", f"lake: {data['lake']}", ""]
    if data["state_error"]:
        out += [f"state database unreadable: {data['state_error']}", ""]
    rows = [("DATASET", "FILES", "RECORDS", "BYTES", "LAST WRITE (UTC)")]
    for name, d in sorted(data["datasets"].items()):
        last = d["last_write"]
        when = last.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if isinstance(
            last, datetime) else "-"
        rows.append((name, str(d["files"]), str(d["records"]), _size(d["bytes"]), when))
    if len(rows) == 1:
        rows.append(("(no files written yet)", "", "", "", ""))
    out += [*_table(rows), ""]
    errors = data["errors"]
    if errors:
        out += _table([("ERROR REASON", "RECORDS")]
                      + [(k, str(v)) for k, v in sorted(errors.items(), key=lambda kv: -kv[1])])
    else:
        out.append("errors: none")
    return "\n".join(out) + "\n"


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
