"""A raw lake straight from `mad generate` output, as the ingest path would have written it.

Used by benchmarks, `mad bench incidents` and tests: each line goes to the raw-lake file of its
kind and service under a simulated ingest hour (the highest event time seen so far, so late
and out-of-order events land in a later ingest hour than their event time, as they would).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from mad.catalog import SERVICES as _SERVICES
from mad.events import parse_timestamp
from mad.lake import raw_partition


def split_backfill(events_file: Path, lake: Path) -> list[Path]:
    """Write a backfill's lines into raw-lake files by simulated ingest hour (the highest event
    time seen so far), per kind and service; unparseable lines go with the gateway logs."""
    frontier = 0.0
    buckets: dict[str, list[bytes]] = {}
    for line in events_file.read_bytes().splitlines():
        kind, service = "log", "gateway"
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            rec = None
        if isinstance(rec, dict):
            t = parse_timestamp(rec.get("timestamp"))
            if t is not None and (frontier == 0 or t < frontier + 6 * 3600):
                frontier = max(frontier, t)
            if rec.get("kind") in ("log", "metric", "apm"):
                kind = str(rec["kind"])
            if isinstance(rec.get("service"), str) and rec["service"]:
                service = str(rec["service"])
            elif isinstance(rec.get("event_type"), str):
                service = str(rec["event_type"]).split(".")[0]
                service = service if service in _SERVICES else "gateway"
        folder = raw_partition(kind, service, frontier)
        buckets.setdefault(folder, []).append(line)
    files = []
    for folder, lines in sorted(buckets.items()):
        path = lake / folder / f"part-{uuid.uuid4().hex}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(path)
    return files
