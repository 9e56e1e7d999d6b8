"""Backfill: a labelled stretch of simulated traffic written to a folder.

`DIR/events.jsonl` (or `.jsonl.gz`) holds the lines in send order, faults included;
`DIR/labels.json` holds the incidents and the fault counts. Both appear atomically (temp
name, fsync, rename), and gzip output carries no timestamp, so one seed gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mad.config import GenerateSettings
from mad.errors import MadError
from mad.generate.engine import Simulator
from mad.generate.faults import Delivery
from mad.generate.scenarios import resolve_scenarios, schedule
from mad.generate.timefmt import iso_utc

CHUNK_S = 60
LABELS_VERSION = 1


def id_salt(seed: int, start: float, end: float, rate: float) -> bytes:
    """The event-id salt of a backfill: fixed by its settings (the same command gives the
    same bytes), different for another stretch of time, rate or seed (no id is reused)."""
    return hashlib.blake2b(f"{seed}|{start:.0f}|{end:.0f}|{rate!r}".encode(),
                           digest_size=16).digest()


def build(gs: GenerateSettings) -> tuple[Simulator, Delivery, float, float]:
    """The simulator and delivery for these settings, with incidents scheduled."""
    start = float(int(gs.start.timestamp()))
    end = start + round(gs.duration_s)
    names = resolve_scenarios(gs.scenarios)
    incidents = schedule(names, start, end, gs.incidents_per_day,
                         np.random.default_rng([gs.seed, 1]))
    f = gs.faults
    sim = Simulator(gs.rate, gs.seed, gs.scrape_interval_s, incidents,
                    epoch_hosts=f.epoch_hosts, skewed_hosts=f.skewed_hosts,
                    id_salt=id_salt(gs.seed, start, end, gs.rate))
    return sim, Delivery(f, gs.seed, end), start, end


def run_backfill(gs: GenerateSettings, out: Path, progress: bool = True) -> str:
    sim, delivery, start, end = build(gs)
    out = _prepare(out)
    name = "events.jsonl.gz" if gs.gzip else "events.jsonl"
    with _atomic(out / name) as raw:
        stream: IO[bytes] | gzip.GzipFile = raw
        if gs.gzip:
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        with _progress(progress, end - start) as advance:
            for t0 in range(int(start), int(end), CHUNK_S):
                t1 = min(t0 + CHUNK_S, int(end))
                delivery.add(sim.events(t0, t1))
                stream.write(b"".join(delivery.release(t1)))
                advance(t1 - t0)
        stream.write(b"".join(delivery.release()))
        if stream is not raw:
            stream.close()
    labels = make_labels(gs, sim, delivery, start, end)
    write_json_atomic(out / "labels.json", labels)
    faults = labels["faults"]
    return (
        f"wrote {delivery.lines} lines ({labels['valid_events']} valid events, "
        f"{faults['duplicates']} duplicates, {faults['late']} late, "
        f"{faults['malformed_total']} malformed) and {len(labels['incidents'])} incidents "
        f"to {out}"
    )


def make_labels(
    gs: GenerateSettings, sim: Simulator, delivery: Delivery, start: float, end: float
) -> dict[str, Any]:
    faults = delivery.summary()
    emitted = sum(sim.counts.values())
    return {
        "version": LABELS_VERSION,
        "seed": gs.seed,
        "start": iso_utc(start),
        "end": iso_utc(end),
        "rate": gs.rate,
        "lines": delivery.lines,
        "valid_events": emitted - faults["malformed_total"],
        "event_type_counts": dict(sorted(sim.counts.items())),
        "hosts": [
            {"host": h.name, "service": h.service, "time_format": h.time_format,
             "utc_offset_min": h.offset_min, "clock_skew_s": h.skew_s,
             "omits_service": h.omits_service}
            for hosts in sim.hosts.values() for h in hosts
        ],
        "incidents": [inc.to_label() for inc in sim.incidents],
        "faults": faults,
        "settings": orjson.loads(orjson.dumps(gs.model_dump(mode="json"))),
    }


def write_json_atomic(path: Path, data: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MadError(f"cannot create {path.parent}: {err.strerror or err}") from None
    with _atomic(path) as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def _prepare(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MadError(f"cannot create --out {out}: {err.strerror or err}") from None
    if not out.is_dir():
        raise MadError(f"--out {out} is not a directory")
    if not os.access(out, os.W_OK | os.X_OK):
        raise MadError(f"--out {out} is not writable")
    return out


@contextmanager
def _atomic(path: Path) -> Iterator[IO[bytes]]:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise MadError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def _progress(enabled: bool, total: float) -> Iterator[Any]:
    if not enabled:
        yield lambda n: None
        return
    bar = Progress(
        TextColumn("generating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(), transient=True,
    )
    with bar:
        task = bar.add_task("generate", total=total)
        yield lambda n: bar.advance(task, n)
