"""The raw writer: stream -> raw lake, buffered per partition like Firehose.

Every record of the shards it reads is routed to one buffer per (dataset, service, ingest hour):
a valid event to `md-raw-{kind}s`, anything else to `md-raw-errors` as an error envelope
(records the ingest API already rejected arrive under key `ERRORS_KEY` as envelopes). A
buffer becomes one `part-{uuid}.jsonl.gz` file when it reaches `flush_bytes` (uncompressed)
or `flush_interval_s` of age, and at shutdown.

Checkpoints: per shard, the writer commits the highest position P such that every record
up to P is in a file already written. A crash therefore re-writes some records (the ETL
deduplicates by event_id) but never loses one.

Shards: on a stream several writer processes may consume (Kinesis), the writers of one
consumer share the shards through leases in the state database (`shard_leases.py`): each
reads the shards it leases, about its fair share, renewed every `writer.lease_s / 3`. A shard
it takes starts from its committed checkpoint; one above its share is written, committed and
then given back; one another writer took meanwhile (the lease expired) is forgotten: its
buffered lines are dropped (the new owner reads them again from the checkpoint) and it is
never committed again. A buffer keeps the shard of each line for that. At shutdown the
leases are given back after the last commit. Without leases (the embedded stream, or a
writer built without a state database) it reads every shard.

Failures that may pass never stop `run`: a lake write that fails (disk full, S3 down) keeps
its buffer and is retried with a doubling backoff before anything more is read; a state
database that cannot record a written file queues its row (`ledger.py`), so the file is
never written twice. Both are counted, and published with the rest of the writer's health
(`writer_health.py`) for `mad ingest status` and the API's `/metrics`.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from mad import lake
from mad.catalog import BY_NAME, KINDS, default_service
from mad.config import WriterSettings
from mad.errors import TransientError
from mad.events import check
from mad.ingest.intake import ERRORS_KEY, error_envelope
from mad.ingest.ledger import FileLedger, FileRow, RetryingLedger
from mad.ingest.shard_leases import AllShards, Change, ShardChoice, holder_name
from mad.ingest.streams import Stream, StreamMonitor, StreamRecord
from mad.ingest.temp_sweep import sweep_stale_temp
from mad.ingest.writer_health import HealthFile, NullHealthFile, WriterHealth
from mad.state import NullLedger
from mad.state.leases import Held
from mad.stores import ObjectStore

__all__ = ["ERRORS_KEY", "RawWriter", "status_rows"]

log = logging.getLogger(__name__)

SOURCE = "raw-writer"
_ERRORS = "error"  # the buffer kind of md-raw-errors
MAX_IDLE_SLEEP = 1.0
MAX_RETRY_SLEEP = 30.0
HEALTH_INTERVAL_S = 1.0
LANDED_INTERVAL_S = 1.0  # how often the landed positions go to the state database
STOP_ATTEMPTS = 5


class LakeWriteFailed(TransientError):
    """A put of a raw file failed in a way that may pass; its buffer is kept."""


class LedgerBacklogFull(TransientError):
    """Too many written files wait for the state database: hold back new files."""


@dataclass
class _Buffer:
    """The lines of one future file, and what they cover."""

    opened: float
    lines: list[bytes] = field(default_factory=list)
    of: list[str] = field(default_factory=list)  # the shard of each line
    nbytes: int = 0
    first: dict[str, int] = field(default_factory=dict)  # lowest position held, per shard
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (shard, kind or code)
    shards: Counter[str] = field(default_factory=Counter)  # stream records per shard

    def totals(self) -> Counter[str]:
        """Records by kind, or by error code."""
        out: Counter[str] = Counter()
        for (_, what), n in self.counts.items():
            out[what] += n
        return out

    def drop(self, shard: str) -> None:
        """Forget the lines of `shard` (another writer holds it now)."""
        keep = [i for i, s in enumerate(self.of) if s != shard]
        self.lines = [self.lines[i] for i in keep]
        self.of = [self.of[i] for i in keep]
        self.nbytes = sum(len(line) + 1 for line in self.lines)
        self.first.pop(shard, None)
        self.shards.pop(shard, None)
        self.counts = Counter({k: n for k, n in self.counts.items() if k[0] != shard})


@dataclass
class _Totals:
    files: int = 0
    bytes: int = 0
    raw_bytes: int = 0
    records: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    last_flush_at: float | None = None
    failures: Counter[str] = field(default_factory=Counter)  # by target: lake, stream
    failing: dict[str, str] = field(default_factory=dict)  # target -> last error, while failing
    last_error: str | None = None
    swept_temp_files: int = 0


class RawWriter:
    """Consumes `stream` as `settings.consumer` into `store`; see the module docstring.

    `clock` measures buffer age (monotonic seconds); tests pass their own. `ledger` records
    the files (retried while the state database fails; a plain ledger is wrapped), `health`
    is where the writer's health is published for other processes. `shards` says which
    shards it reads: every one (`AllShards`, the default) or those it leases
    (`ShardLeases`, when several writers share the stream).
    """

    def __init__(self, stream: Stream, store: ObjectStore, settings: WriterSettings,
                 clock: Callable[[], float] = time.monotonic,
                 ledger: FileLedger | RetryingLedger | None = None,
                 checked_upstream: bool = False,
                 health: HealthFile | NullHealthFile | None = None,
                 shards: ShardChoice | None = None) -> None:
        self.stream, self.store, self.settings, self.clock = stream, store, settings, clock
        if isinstance(ledger, RetryingLedger):
            self.ledger = ledger
        else:
            plain: FileLedger = ledger or NullLedger()
            self.ledger = RetryingLedger(lambda: plain)
        self.health = health or NullHealthFile()
        self.stop_attempts = STOP_ATTEMPTS
        self._published_at = -HEALTH_INTERVAL_S
        self._swept = False
        # Records under event keys were validated by the ingest API before they were appended:
        # then only their routing fields are looked at here.
        self.checked_upstream = checked_upstream
        self.consumer = settings.consumer
        self.leases = shards or AllShards(stream)
        self._shards: list[str] = []  # the shards read, in the stream's order
        self._committed: dict[str, int | None] = {}
        self._cursor: dict[str, int | None] = {}
        self._buffers: dict[tuple[str, str | None, int], _Buffer] = {}
        self._landed_at: tuple[float, dict[str, int]] = (-LANDED_INTERVAL_S, {})
        self._totals = _Totals()
        self._lock = threading.Lock()  # stats() may be called from another thread
        self._sync(stream.shards())

    # -- one step at a time ----------------------------------------------------------------

    def poll(self) -> int:
        """Read one batch from every shard, route it, flush what is due, commit.
        Returns how many records were read."""
        self.ledger.retry()
        if self.leases.due():
            self.rebalance()
        read = 0
        for shard in self._shards:
            batch = self.stream.read(shard, self._cursor[shard], self.settings.read_batch)
            read += len(batch)
            self._route(shard, batch)
        self.flush_due()
        return read

    def flush_due(self) -> int:
        """Write the buffers at their size or age limit; commit; return files written."""
        now = self.clock()
        due = [k for k, b in self._buffers.items()
               if b.nbytes >= self.settings.flush_bytes
               or now - b.opened >= self.settings.flush_interval_s]
        for key in due:
            self._flush(key)
        self.commit()
        return len(due)

    def flush_all(self) -> int:
        """Write every open buffer and commit (at shutdown); return files written."""
        keys = list(self._buffers)
        for key in keys:
            self._flush(key)
        self.commit()
        self._landed(force=True)
        return len(keys)

    def commit(self) -> None:
        """Advance each shard's checkpoint to the last position covered by written files
        (only under a lease renewed recently: one lost meanwhile is dropped first)."""
        if not self.leases.fresh():
            self.leases.renew()
            self._sync(self._shards)
        for shard in self._shards:
            lows = [b.first[shard] for b in self._buffers.values() if shard in b.first]
            safe = min(lows) - 1 if lows else self._cursor[shard]
            done = self._committed[shard]
            if safe is not None and safe >= 0 and (done is None or safe > done):
                self.stream.commit(self.consumer, shard, safe)
                with self._lock:
                    self._committed[shard] = safe
        self._landed()

    def _landed(self, force: bool = False) -> None:
        """Tell the state database how far every record is in a recorded file (for the
        reconciliation of acknowledgements with the raw lake), about once a second."""
        now = self.clock()
        landed = {s: p for s, p in self._committed.items() if p is not None}
        due = force or now - self._landed_at[0] >= LANDED_INTERVAL_S
        if landed and landed != self._landed_at[1] and due and self.ledger.progress(
                self.consumer, landed):
            self._landed_at = (now, landed)

    def rebalance(self) -> Change:
        """Check the shard leases now (`poll` does when due): forget the shards another
        writer holds now (their unwritten records are left to it), start the newly taken
        ones from their checkpoints, and write, commit and give back those above this
        writer's share."""
        order = self.stream.shards()
        change = self.leases.balance(order)
        self._sync(order)
        if change.surplus:
            keys = [k for k, b in self._buffers.items()
                    if any(s in b.first for s in change.surplus)]
            for key in keys:
                self._flush(key)
            self.commit()
            self.leases.release(change.surplus)
            self._sync(order)
        return change

    def release(self) -> None:
        """Give back every shard lease (after the last commit); a state database that
        cannot take it now lets the leases expire instead."""
        try:
            self.leases.release()
        except TransientError as err:
            log.warning("raw writer: could not give back the shard leases (%s); they expire "
                        "on their own", err)

    def _sync(self, order: list[str]) -> None:
        """Read exactly the shards the leases hold: drop the others' buffered lines and
        positions, start the new ones from their committed checkpoints."""
        held = self.leases.held
        for shard in [s for s in self._shards if s not in held]:
            for key, buf in list(self._buffers.items()):
                if shard in buf.first:
                    buf.drop(shard)
                    if not buf.lines:
                        with self._lock:
                            del self._buffers[key]
            self._shards.remove(shard)
            with self._lock:
                self._committed.pop(shard, None)
            self._cursor.pop(shard, None)
        for shard in order:
            if shard in held and shard not in self._cursor:
                committed = self.stream.committed(self.consumer, shard)
                with self._lock:
                    self._committed[shard] = committed
                self._cursor[shard] = committed
                self._shards.append(shard)
        rank = {s: i for i, s in enumerate(order)}
        self._shards.sort(key=lambda s: rank.get(s, len(rank)))

    def drain(self) -> None:
        """Read until the stream has nothing more, then write everything (batch mode)."""
        self._sweep()
        while self.poll() > 0:
            continue
        self.flush_all()
        self.release()

    def run(self, stop: threading.Event, idle_sleep: float = MAX_IDLE_SLEEP,
            drain: bool = False) -> None:
        """Poll until `stop` is set, sleeping at most `idle_sleep` when there is nothing
        new and backing off while the lake, the stream or the state database fails; then
        write everything and commit. With `drain`, read what is left in the stream first
        (its producers have stopped). What still cannot be written after `stop_attempts`
        stays in the stream (not committed) for the next start: one log line, no raise."""
        self._sweep()
        pause = 0.0
        while not stop.is_set():
            try:
                if pause:  # something failed: retry the due buffers before reading more
                    self.flush_due()
                read = self.poll()
                pause = 0.0
                self._recovered("stream")
            except TransientError as err:
                self._failed(err)
                pause = min(max(pause * 2, 0.5), MAX_RETRY_SLEEP)
                self._pause(stop, pause)
                continue
            self._publish()
            if not read:
                stop.wait(min(idle_sleep, self._next_due()))
        try:
            self._finish(drain)
        finally:
            self._publish(force=True)

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait `seconds` (less when `stop` is set), renewing the shard leases when due, so
        a long backoff does not let them expire."""
        end = time.monotonic() + seconds
        while not stop.is_set() and (left := end - time.monotonic()) > 0:
            stop.wait(min(left, MAX_IDLE_SLEEP))
            if self.leases.due():
                try:
                    self.leases.renew()
                except TransientError:
                    continue
                self._sync(self._shards)

    def _finish(self, drain: bool) -> None:
        error: TransientError | None = None
        for attempt in range(self.stop_attempts):
            try:
                if drain:
                    while self.poll() > 0:
                        continue
                self.flush_all()
                error = None
                break
            except TransientError as err:
                error = err
                self._failed(err)
                if attempt < self.stop_attempts - 1:
                    time.sleep(min(2.0**attempt, MAX_RETRY_SLEEP))
        if error is not None:
            buffered = sum(len(b.lines) for b in self._buffers.values())
            log.error("raw writer: stopping with %d records not written (%s); they stay in "
                      "the stream and are written at the next start", buffered, error)
        self.ledger.flush(self.stop_attempts)
        self.release()

    def stats(self) -> dict[str, Any]:
        """Counters for `mad ingest status` and the health endpoint."""
        with self._lock:
            t = self._totals
            return {
                "consumer": self.consumer,
                "lake": self.store.url,
                "files": t.files,
                "bytes": t.bytes,
                "raw_bytes": t.raw_bytes,
                "records": dict(t.records),
                "errors": dict(t.errors),
                "last_flush_at": t.last_flush_at,
                "committed": dict(self._committed),
                "shards": list(self._shards),
                "lease_owner": self.leases.owner,
                "open_buffers": len(self._buffers),
                "buffered_bytes": sum(b.nbytes for b in list(self._buffers.values())),
                "flush_failures": sum(t.failures.values()) + self.ledger.failures,
                "last_error": t.last_error,
                "lake_failures": t.failures["lake"],
                "stream_failures": t.failures["stream"],
                "state_failures": self.ledger.failures,
                "unrecorded_files": self.ledger.pending,
                "failing": self._failing(),
                "swept_temp_files": t.swept_temp_files,
            }

    def health_report(self) -> WriterHealth:
        """What `health` publishes: files, files waiting for the ledger, failures."""
        with self._lock:
            failures = dict(self._totals.failures)
            files = self._totals.files
        failures["state"] = self.ledger.failures
        return WriterHealth(pid=os.getpid(), updated_at=time.time(), files=files,
                            unrecorded_files=self.ledger.pending, failures=failures,
                            failing=self._failing())

    def _failing(self) -> dict[str, str]:
        failing = dict(self._totals.failing)
        if self.ledger.error is not None:
            failing["state"] = self.ledger.error
        return failing

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._published_at >= HEALTH_INTERVAL_S:
            self._published_at = now
            self.health.publish(self.health_report())

    def _sweep(self) -> None:
        """Once, at the start: delete the temp files an interrupted writer left."""
        if not self._swept:
            self._swept = True
            swept = sweep_stale_temp(self.store, self.settings.stale_temp_s)
            with self._lock:
                self._totals.swept_temp_files = swept

    # -- helpers -------------------------------------------------------------------------

    def _route(self, shard: str, batch: list[StreamRecord]) -> None:
        flush_bytes = self.settings.flush_bytes
        done = self._cursor[shard]
        try:
            for rec in batch:
                kind, service, line, count, weight = self._classify(rec)
                key = (kind, service, int(rec.appended_at) // 3600 * 3600)
                buf = self._buffers.get(key)
                if buf is None:
                    buf = self._buffers[key] = _Buffer(self.clock())
                buf.lines.append(line)
                buf.of.append(shard)
                buf.nbytes += len(line) + 1
                buf.first.setdefault(shard, rec.position)
                buf.counts[shard, count] += weight
                buf.shards[shard] += 1
                done = rec.position
                if buf.nbytes >= flush_bytes:
                    self._flush(key)
        finally:
            self._cursor[shard] = done

    def _classify(self, rec: StreamRecord) -> tuple[str, str | None, bytes, str, int]:
        """(buffer kind, service, line, what to count, how many records) for one stream
        record; an envelope packing several rejected records (`records`) counts them all."""
        payload = rec.payload.strip()
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            if rec.key == ERRORS_KEY:
                return self._reject(rec, "bad_error_envelope", f"not JSON: {err}")
            return self._reject(rec, "invalid_json", f"not valid JSON: {err}")
        if rec.key == ERRORS_KEY:
            if not isinstance(event, dict) or not isinstance(event.get("error_code"), str):
                return self._reject(rec, "bad_error_envelope", "envelope without error_code")
            packed = event.get("records")
            weight = packed if type(packed) is int and packed > 0 else 1
            return _ERRORS, None, _line(payload, event), event["error_code"], weight
        if not (self.checked_upstream and _routable(event)):
            problem = check(event)
            if problem is not None:
                return self._reject(rec, problem.reason, problem.message)
        service = event.get("service") or default_service(event["event_type"])
        return event["kind"], service, _line(payload, event), event["kind"], 1

    def _reject(self, rec: StreamRecord, code: str,
                message: str) -> tuple[str, None, bytes, str, int]:
        when = datetime.fromtimestamp(rec.appended_at, UTC)
        envelope = error_envelope(code, message, rec.payload, when, source=SOURCE)
        return _ERRORS, None, orjson.dumps(envelope), code, 1

    def _flush(self, key: tuple[str, str | None, int]) -> None:
        kind, service, hour = key
        buf = self._buffers[key]
        data = b"\n".join(buf.lines) + b"\n"
        gz = self.settings.gzip
        if gz:
            data = gzip.compress(data, compresslevel=self.settings.gzip_level, mtime=0)
        if kind == _ERRORS:
            name = lake.errors_key(hour, gz)
        else:
            name = lake.raw_key(kind, service or "unknown", hour, gz)
        if self.ledger.backlog_full:
            raise LedgerBacklogFull(
                f"{self.ledger.pending} written files wait to be recorded in the state "
                f"database ({self.ledger.error}); no new file until it takes them")
        try:
            self.store.put(name, data)
        except TransientError as err:
            raise LakeWriteFailed(str(err)) from err
        log.debug("wrote %s (%d records, %d bytes)", name, len(buf.lines), len(data))
        with self._lock:
            del self._buffers[key]
            t = self._totals
            t.files += 1
            t.bytes += len(data)
            t.raw_bytes += buf.nbytes
            counts = buf.totals()
            (t.errors if kind == _ERRORS else t.records).update(counts)
            t.last_flush_at = time.time()
            t.failing.pop("lake", None)
        # The file is durable: from here on it is never written again, whatever the ledger.
        self.ledger.record(FileRow(name, name.split("/", 1)[0], service, hour, len(buf.lines),
                                   len(data), dict(counts), dict(buf.shards)))

    def _next_due(self) -> float:
        if not self._buffers:
            return MAX_IDLE_SLEEP
        oldest = min(b.opened for b in self._buffers.values())
        return max(0.01, oldest + self.settings.flush_interval_s - self.clock())

    def _failed(self, err: TransientError) -> None:
        """Count a failure by what failed (the state database counts its own), and say so
        at once to other processes."""
        with self._lock:
            self._totals.last_error = str(err)
            if not isinstance(err, LedgerBacklogFull):
                target = "lake" if isinstance(err, LakeWriteFailed) else "stream"
                self._totals.failures[target] += 1
                self._totals.failing[target] = str(err)
                log.warning("raw writer: %s (will retry)", err)
        self._publish(force=True)

    def _recovered(self, target: str) -> None:
        if target in self._totals.failing:
            with self._lock:
                self._totals.failing.pop(target, None)
            log.warning("raw writer: the %s works again", target)


def _routable(event: Any) -> bool:
    """Has what routing needs: a dict with a known kind and a catalogued event type."""
    return (type(event) is dict and event.get("kind") in KINDS
            and event.get("event_type") in BY_NAME)


def _line(payload: bytes, event: Any) -> bytes:
    """The payload as one JSONL line: as sent when it has no line breaks, else re-encoded."""
    return orjson.dumps(event) if b"\n" in payload or b"\r" in payload else payload


def status_rows(monitor: StreamMonitor, consumer: str,
                stats: dict[str, Any] | None = None,
                holders: dict[str, Held] | None = None) -> list[dict[str, Any]]:
    """One row per shard for a status table: positions, checkpoint and lag of `consumer`,
    the writer holding the shard's lease (`writer`: host:pid, `lease_expires`: UTC; None
    without leases), plus the writer's counters (files, bytes, errors by reason) when
    `stats` is given."""
    holders = holders or {}
    lags = monitor.lag(consumer)
    rows = []
    status = monitor.status()
    for shard in status.shards:
        lag = lags.get(shard.shard)
        rows.append({
            "shard": shard.shard,
            "first": shard.first,
            "last": shard.last,
            "committed": shard.committed.get(consumer),
            "lag_records": lag.records if lag else None,
            "lag_bytes": lag.bytes if lag else None,
            "lag_seconds": lag.age_seconds if lag else None,
            "writer": holder_name(held.owner) if (held := holders.get(shard.shard)) else None,
            "lease_expires": held.expires if held else None,
        })
    if stats is not None:
        for row in rows:
            row.update(files=stats["files"], bytes=stats["bytes"], errors=stats["errors"])
    return rows
