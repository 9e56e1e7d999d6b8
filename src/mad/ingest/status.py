"""`mad ingest status`: the stream's shards and lag, and what the raw writer has written."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mad.config import Settings
from mad.ingest.wiring import ledger, open_configured_stream, stream_monitor
from mad.ingest.writer import status_rows


def collect(settings: Settings) -> dict[str, Any]:
    """Per-shard positions and lag for the writer's consumer, and the raw files ledger."""
    stream = open_configured_stream(settings, role="reader")  # the API may own it
    try:
        monitor = stream_monitor(settings, stream)
        shards = status_rows(monitor, settings.writer.consumer)
        stream_status = monitor.status()
    finally:
        stream.close()
    return {
        "stream": {"backend": stream_status.backend, "disk_bytes": stream_status.disk_bytes,
                   "dropped_records": stream_status.dropped_records},
        "shards": shards,
        "lake": settings.lake_url,
        **ledger(settings).summary(),
    }


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
           f" {data['stream']['dropped_records']} records dropped by retention budget", ""]
    rows: list[tuple[str, ...]] = [
        ("SHARD", "LAST", "CHECKPOINT", "LAG RECORDS", "LAG BYTES", "LAG AGE")
    ]
    for r in data["shards"]:
        age = r["lag_seconds"]
        rows.append((str(r["shard"]), str(r["last"]), str(r["committed"]),
                     str(r["lag_records"]), _size(r["lag_bytes"]),
                     "-" if age is None else f"{age:.1f} s"))
    out += [*_table(rows), "", f"lake: {data['lake']}", ""]
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
