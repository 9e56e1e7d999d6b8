"""A raw lake straight from `mad generate` output, as the ingest path would have written it.

Used by benchmarks, `mad bench incidents` and tests: each line goes to the raw-lake file of its
kind and service under a simulated ingest hour (the highest event time seen so far, so late
and out-of-order events land in a later ingest hour than their event time, as they would).
"""

from __future__ import annotations

import gzip
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import orjson

from mad.catalog import SERVICES as _SERVICES
from mad.events import parse_timestamp
from mad.lake import raw_partition

MAX_OPEN = 128


def split_backfill(events_file: Path, lake: Path) -> list[Path]:
    """Write a backfill's lines (`events.jsonl` or `.jsonl.gz`) into raw-lake files by
    simulated ingest hour (the highest event time seen so far), one file per kind, service and
    hour; unparseable lines go with the gateway logs. Streams: memory does not grow with the
    input. Returns the files written, sorted by folder."""
    frontier = 0.0
    outputs: dict[str, IO[bytes]] = {}
    paths: dict[str, Path] = {}
    opener = gzip.open if events_file.suffix == ".gz" else open
    with opener(events_file, "rb") as lines, ExitStack() as files:
        for raw in lines:
            line = raw.rstrip(b"\n")
            kind, service, frontier = _route(line, frontier)
            folder = raw_partition(kind, service, frontier)
            out = outputs.get(folder)
            if out is None:
                if len(outputs) >= MAX_OPEN:  # stay far below the open-files limit
                    files.close()
                    outputs.clear()
                if folder not in paths:
                    paths[folder] = lake / folder / f"part-{uuid.uuid4().hex}.jsonl"
                    paths[folder].parent.mkdir(parents=True, exist_ok=True)
                out = outputs[folder] = files.enter_context(
                    open(paths[folder], "ab", buffering=1 << 20))
            out.write(line + b"\n")
    return [paths[folder] for folder in sorted(paths)]


def _route(line: bytes, frontier: float) -> tuple[str, str, float]:
    """(kind, service, new frontier) of one line, as the ingest path would file it."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "log", "gateway", frontier
    if not isinstance(rec, dict):
        return "log", "gateway", frontier
    t = parse_timestamp(rec.get("timestamp"))
    if t is not None and (frontier == 0 or t < frontier + 6 * 3600):
        frontier = max(frontier, t)
    kind = str(rec["kind"]) if rec.get("kind") in ("log", "metric", "apm") else "log"
    service = "gateway"
    if isinstance(rec.get("service"), str) and rec["service"]:
        service = str(rec["service"])
    elif isinstance(rec.get("event_type"), str):
        service = str(rec["event_type"]).split(".")[0]
        service = service if service in _SERVICES else "gateway"
    return kind, service, frontier
