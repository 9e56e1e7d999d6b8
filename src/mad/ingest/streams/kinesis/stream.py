"""The Kinesis adapter: a `Stream` (and `StreamMonitor`) on a Kinesis data stream.

Shards are the Kinesis shard ids (`shardId-000000000000`, ...); a record's partition key is
its key (the event id, so records spread over every shard; rejections share one key), so
order per key holds within a shard; positions are sequence
numbers read as ints. Consumer checkpoints live in the state database (`mad.state`), table
`stream_checkpoints`, so any process that opens the same stream and database sees them.

Appends use PutRecords in batches within its limits (`put.py`). Entries that fail with a
retryable code (throttling, internal failure) are sent again, alone, with exponential backoff
and jitter, a bounded number of times; then `append` raises TransientError. A retried record
lands after records of the same key that succeeded in the same call, so per-key order can
break across a partial failure (delivery is at least once and the lake deduplicates by
event_id anyway). Reads go through `pages.py`, lag and status through `lag.py`; the stream is
created and awaited on open by `provision.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from mad.errors import ConfigError, TerminalError, TransientError
from mad.ingest.streams.base import (
    Ack,
    ClosesOnExit,
    Lag,
    Position,
    ShardStatus,
    StreamRecord,
    StreamStatus,
)
from mad.ingest.streams.kinesis.client import call, make_client
from mad.ingest.streams.kinesis.lag import LagProbe
from mad.ingest.streams.kinesis.pages import MAX_GET_RECORDS, ShardPages
from mad.ingest.streams.kinesis.provision import ensure_active, list_shards
from mad.ingest.streams.kinesis.put import (
    MAX_KEY_CHARS,
    MAX_RECORD_BYTES,
    backoff_seconds,
    plan_batches,
    settle_put_response,
)
from mad.lake import EVENTS_STREAM

log = logging.getLogger(__name__)


class KinesisStream(ClosesOnExit):
    """A `Stream` on a Kinesis data stream; see the module docstring.

    Options: `stream_name` and `shards` (the stream is created with that many shards when
    missing and `create` is true, then awaited up to `wait_seconds`; an existing stream keeps
    its own count); `endpoint_url` (moto, LocalStack; None for AWS), `region` and the
    credentials (None: boto3's usual chain); `state_url`, the state database holding the
    checkpoints; `consumers`, names to show in `status` before they first commit;
    `put_attempts` (PutRecords rounds for throttled entries) and `client_attempts` (botocore's
    own retries of a whole call); `max_record_bytes`; `lag_probe_records` and `lag_ttl`.
    """

    appends_checked = False
    shared = True

    def __init__(
        self,
        stream_name: str = EVENTS_STREAM,
        shards: int = 4,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        state_url: str = "sqlite:///data/state.db",
        consumers: Iterable[str] = (),
        create: bool = True,
        wait_seconds: float = 60.0,
        put_attempts: int = 8,
        client_attempts: int = 3,
        max_record_bytes: int = MAX_RECORD_BYTES,
        lag_probe_records: int = 1000,
        lag_ttl: float = 5.0,
    ) -> None:
        from mad.state import CheckpointStore, open_state, safe_url

        if (
            shards < 1
            or put_attempts < 1
            or client_attempts < 1
            or not 1 <= lag_probe_records <= MAX_GET_RECORDS
        ):
            raise ConfigError(
                "kinesis stream needs shards >= 1, put_attempts >= 1, client_attempts >= 1 and "
                f"1 <= lag_probe_records <= {MAX_GET_RECORDS}"
            )
        self.name = stream_name
        self._endpoint_url, self._region = endpoint_url, region
        self._put_attempts, self._max_record = put_attempts, max_record_bytes
        self._client = make_client(endpoint_url, region, access_key_id, secret_access_key,
                                   session_token, client_attempts)
        self._lock = threading.Lock()
        self._tips: dict[str, Position] = {}
        self._consumers = frozenset(consumers)
        self._closed = False
        self._pages = ShardPages(self._client, stream_name)
        self._probe = LagProbe(self._pages, lag_probe_records, lag_ttl, self._note_tips)
        ensure_active(self._client, stream_name, shards, create, wait_seconds, region)
        self._shards = list_shards(self._client, stream_name)
        self._engine = open_state(state_url)
        self._checkpoints = CheckpointStore(self._engine)
        self._safe_state_url = safe_url(state_url)

    # -- Stream protocol -----------------------------------------------------------------

    def shards(self) -> list[str]:
        return list(self._shards)

    def append(self, records: Sequence[tuple[str, bytes]]) -> list[Ack]:
        if self._closed:
            raise TransientError(f"Kinesis stream {self.name} is closed")
        entries: list[dict[str, Any]] = []
        sizes: list[int] = []
        for key, payload in records:
            size = len(key.encode()) + len(payload)
            if not 1 <= len(key) <= MAX_KEY_CHARS:
                raise TerminalError(
                    f"stream record key must be 1-{MAX_KEY_CHARS} characters, got {len(key)}"
                )
            if size > self._max_record:
                raise TerminalError(
                    f"stream record too large ({size} bytes; Kinesis takes at most "
                    f"{self._max_record} bytes of key and payload)"
                )
            entries.append({"Data": payload, "PartitionKey": key})
            sizes.append(size)
        acks: list[Ack | None] = [None] * len(entries)
        for batch in plan_batches(sizes):
            self._put(entries, list(batch), acks)
        done = [ack for ack in acks if ack is not None]
        if len(done) != len(entries):  # cannot happen: _put raises first
            raise TransientError(f"Kinesis stream {self.name}: some records got no answer")
        self._note_tips(done)
        return done

    def read(self, shard: str, after: Position | None, limit: int) -> list[StreamRecord]:
        self._check_shard(shard)
        if limit < 1:
            return []
        iterator = self._pages.take(shard, after)
        raw, next_iterator, behind_ms = self._pages.get(
            shard, after, iterator, min(limit, MAX_GET_RECORDS)
        )
        out = [
            StreamRecord(
                shard,
                int(r["SequenceNumber"]),
                r["PartitionKey"],
                bytes(r["Data"]),
                r["ApproximateArrivalTimestamp"].timestamp(),
            )
            for r in raw
        ]
        if after is not None:
            out = [r for r in out if r.position > after]
        if next_iterator is not None:
            self._pages.keep(shard, out[-1].position if out else after, next_iterator,
                             len(self._shards))
        if out and behind_ms == 0:
            self._note_tips([Ack(shard, out[-1].position)])
        return out

    def commit(self, consumer: str, shard: str, position: Position) -> None:
        self._check_shard(shard)
        if position < 0:
            raise TerminalError(f"cannot commit negative position {position} on {shard}")
        self._checkpoints.save(self.name, consumer, shard, position)
        self._probe.forget(consumer, shard)
        with self._lock:
            self._consumers = self._consumers | {consumer}

    def committed(self, consumer: str, shard: str) -> Position | None:
        self._check_shard(shard)
        value = self._checkpoints.load(self.name, consumer, shard)
        return None if value is None else int(value)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.dispose()
        self._client.close()

    # -- StreamMonitor -------------------------------------------------------------------

    def lag(self, consumer: str) -> dict[str, Lag]:
        cached = {shard: self._probe.cached(consumer, shard) for shard in self._shards}
        if all(lag is not None for lag in cached.values()):
            return {shard: lag for shard, lag in cached.items() if lag is not None}
        committed = self._committed_by_shard(consumer)
        return {shard: self._probe.lag(consumer, shard, committed.get(shard))
                for shard in self._shards}

    def status(self) -> StreamStatus:
        checkpoints = self._checkpoints.all(self.name)
        consumers = sorted(self._consumers | {c.consumer for c in checkpoints})
        positions = {(c.consumer, c.shard): int(c.position) for c in checkpoints}
        rows = []
        for shard in self._shards:
            committed = {c: positions.get((c, shard)) for c in consumers}
            lags = {c: self._probe.lag(c, shard, committed[c]) for c in consumers}
            first = self._probe.first_position(shard)
            with self._lock:
                tip = self._tips.get(shard)
            rows.append(
                ShardStatus(
                    shard=shard,
                    first=first,
                    last=self._probe.last_position(shard, first, committed.values(), tip),
                    committed=committed,
                    lag=lags,
                    segments=0,
                    disk_bytes=0,
                )
            )
        summary = call(self._client, self.name, "describe_stream_summary",
                       StreamName=self.name)["StreamDescriptionSummary"]
        settings: dict[str, object] = {
            "name": self.name,
            "region": self._region,
            "endpoint_url": self._endpoint_url,
            "open_shards": summary.get("OpenShardCount"),
            "retention_hours": summary.get("RetentionPeriodHours"),
            "stream_status": summary.get("StreamStatus"),
            "state_url": self._safe_state_url,
            "lag_probe_records": self._probe.probe_records,
            "lag_ttl": self._probe.ttl,
        }
        return StreamStatus("kinesis", rows, self.disk_bytes(), settings=settings)

    def disk_bytes(self) -> int:
        """Always 0: the data lives in the service, nothing on local disk."""
        return 0

    # -- helpers ---------------------------------------------------------------------------

    def _put(
        self, entries: list[dict[str, Any]], pending: list[int], acks: list[Ack | None]
    ) -> None:
        """Store `entries[i]` for i in `pending`, filling `acks`; retry throttled entries."""
        for attempt in range(self._put_attempts):
            if attempt:
                time.sleep(backoff_seconds(attempt))
            response = call(self._client, self.name, "put_records", StreamName=self.name,
                            Records=[entries[i] for i in pending])
            outcome = settle_put_response(response, pending)
            for index, ack in outcome.acks.items():
                acks[index] = ack
            if outcome.refused:
                _, code, message = outcome.refused[0]
                raise TransientError(
                    f"Kinesis stream {self.name} refused {len(outcome.refused)} records: "
                    f"{code}: {message}"
                )
            if not outcome.retry:
                return
            log.info(
                "kinesis %s: %d of %d records throttled, retrying",
                self.name,
                len(outcome.retry),
                len(pending),
            )
            pending = outcome.retry
        raise TransientError(
            f"Kinesis stream {self.name} throttled {len(pending)} records "
            f"{self._put_attempts} times; retry later or add shards"
        )

    def _note_tips(self, acks: Iterable[Ack]) -> None:
        """Remember the newest position seen per shard; a shard not known yet means the
        stream was resharded, so the shard list is read again."""
        with self._lock:
            for ack in acks:
                if ack.position > self._tips.get(ack.shard, -1):
                    self._tips[ack.shard] = ack.position
            if any(shard not in self._shards for shard in self._tips):
                self._shards = list_shards(self._client, self.name)

    def _committed_by_shard(self, consumer: str) -> dict[str, Position]:
        return {
            c.shard: int(c.position)
            for c in self._checkpoints.all(self.name)
            if c.consumer == consumer
        }

    def _check_shard(self, shard: str) -> None:
        if shard in self._shards:
            return
        with self._lock:
            self._shards = list_shards(self._client, self.name)
        if shard not in self._shards:
            raise TerminalError(f"no shard {shard!r} in Kinesis stream {self.name}")
