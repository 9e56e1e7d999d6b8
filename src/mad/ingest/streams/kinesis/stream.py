"""The Kinesis stream: Amazon Kinesis Data Streams (or an emulator) through boto3.

Shards are the Kinesis shard ids (`shardId-000000000000`, ...); a record's partition key is
its key (the service name), so order per key holds within a shard; positions are sequence
numbers read as ints. Consumer checkpoints live in the state database (`mad.state`), table
`stream_checkpoints`, so any process that opens the same stream and database sees them.

Appends use PutRecords in batches of at most 500 records and 5 MiB. Entries that fail with a
retryable code (throttling, internal failure) are sent again, alone, with exponential backoff
and jitter, a bounded number of times; then `append` raises TransientError. A retried record
lands after records of the same key that succeeded in the same call, so per-key order can
break across a partial failure (delivery is at least once and the lake deduplicates by
event_id anyway).

Lag is an estimate, because Kinesis does not count records: for each shard `lag` reads at
most `lag_probe_records` records after the committed position (GetRecords, cached for
`lag_ttl` seconds per consumer and shard, dropped on commit). Within that window records and
bytes are exact, and the age is the arrival time of the first unconsumed record. When more
remain, the count is extrapolated from the arrival rate in the window and MillisBehindLatest;
when that rate cannot be measured (the window spans under a second) the window size is
reported, a lower bound. Probes use the shard's read throughput (5 calls/s, 2 MiB/s shared
with consumers), hence the cache.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import Field

from mad.errors import ConfigError, TerminalError, TransientError
from mad.ingest.streams.base import (
    STREAMS,
    Ack,
    ClosesOnExit,
    Lag,
    Position,
    ShardStatus,
    StreamContext,
    StreamRecord,
    StreamStatus,
)
from mad.lake import EVENTS_STREAM
from mad.registry import Options

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 2**20
MAX_RECORD_BYTES = 2**20
MAX_KEY_CHARS = 256
MAX_GET_RECORDS = 10_000
RETRYABLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException"}
)
ITERATOR_MAX_AGE = 240.0  # Kinesis shard iterators expire after 300 s
EMPTY_PAGES = 5  # GetRecords may return empty pages before reaching data; follow a few


def plan_batches(
    sizes: Sequence[int], max_records: int = MAX_BATCH_RECORDS, max_bytes: int = MAX_BATCH_BYTES
) -> list[range]:
    """Split records of the given sizes, in order, into runs within both limits."""
    batches: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_records or total + size > max_bytes):
            batches.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


class PutOutcome(NamedTuple):
    """A PutRecords response sorted out: acks of stored records by input index, indexes to
    send again, and (index, code, message) of entries refused for a non-retryable reason."""

    acks: dict[int, Ack]
    retry: list[int]
    refused: list[tuple[int, str, str]]


def settle_put_response(response: Mapping[str, Any], indexes: Sequence[int]) -> PutOutcome:
    """Match a PutRecords response to the input indexes of the entries that were sent."""
    entries = response.get("Records", [])
    if len(entries) != len(indexes):
        raise TransientError(
            f"Kinesis PutRecords answered {len(entries)} entries for {len(indexes)} records"
        )
    outcome = PutOutcome({}, [], [])
    for index, entry in zip(indexes, entries, strict=True):
        code = entry.get("ErrorCode")
        if not code:
            outcome.acks[index] = Ack(entry["ShardId"], int(entry["SequenceNumber"]))
        elif code in RETRYABLE_CODES:
            outcome.retry.append(index)
        else:
            outcome.refused.append((index, str(code), str(entry.get("ErrorMessage", ""))))
    return outcome


def backoff_seconds(attempt: int, base: float = 0.1, cap: float = 2.0) -> float:
    """Delay before retry number `attempt` (1, 2, ...): doubling from `base` up to `cap`,
    with jitter in [50%, 100%] so throttled writers spread out."""
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


class _Scan(NamedTuple):
    """What a bounded read past a position found."""

    records: int
    bytes: int
    first_arrival: float | None
    last_arrival: float | None
    last_position: Position | None
    behind_ms: int
    full: bool  # stopped at the record cap, so more may remain


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
        import boto3
        from botocore.config import Config

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
        self.name, self._shard_count = stream_name, shards
        self._endpoint_url, self._region = endpoint_url, region
        self._put_attempts, self._max_record = put_attempts, max_record_bytes
        self._probe_records, self._lag_ttl = lag_probe_records, lag_ttl
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region,
        )
        config = Config(
            retries={"mode": "standard", "max_attempts": client_attempts},
            connect_timeout=5,
            read_timeout=30,
        )
        self._client = session.client("kinesis", endpoint_url=endpoint_url, config=config)
        self._lock = threading.Lock()
        self._iterators: dict[tuple[str, Position | None], tuple[str, float]] = {}
        self._lags: dict[tuple[str, str], tuple[Lag, float]] = {}
        self._tips: dict[str, Position] = {}
        self._consumers = frozenset(consumers)
        self._closed = False
        self._ensure_active(create, wait_seconds)
        self._shards = self._list_shards()
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
        iterator = self._take_iterator(shard, after)
        raw, next_iterator, behind_ms = self._get_records(
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
            self._keep_iterator(shard, out[-1].position if out else after, next_iterator)
        if out and behind_ms == 0:
            self._note_tips([Ack(shard, out[-1].position)])
        return out

    def commit(self, consumer: str, shard: str, position: Position) -> None:
        self._check_shard(shard)
        if position < 0:
            raise TerminalError(f"cannot commit negative position {position} on {shard}")
        self._checkpoints.save(self.name, consumer, shard, position)
        with self._lock:
            self._lags.pop((consumer, shard), None)
            self._consumers = self._consumers | {consumer}

    def committed(self, consumer: str, shard: str) -> Position | None:
        self._check_shard(shard)
        value = self._checkpoints.load(self.name, consumer, shard)
        return None if value is None else int(value)

    def lag(self, consumer: str) -> dict[str, Lag]:
        cached = {shard: self._cached_lag(consumer, shard) for shard in self._shards}
        if all(lag is not None for lag in cached.values()):
            return {shard: lag for shard, lag in cached.items() if lag is not None}
        committed = self._committed_by_shard(consumer)
        return {shard: self._lag(consumer, shard, committed.get(shard)) for shard in self._shards}

    def status(self) -> StreamStatus:
        checkpoints = self._checkpoints.all(self.name)
        consumers = sorted(self._consumers | {c.consumer for c in checkpoints})
        positions = {(c.consumer, c.shard): int(c.position) for c in checkpoints}
        rows = []
        for shard in self._shards:
            committed = {c: positions.get((c, shard)) for c in consumers}
            lags = {c: self._lag(c, shard, committed[c]) for c in consumers}
            first = self._first_position(shard)
            rows.append(
                ShardStatus(
                    shard=shard,
                    first=first,
                    last=self._last_position(shard, first, committed.values()),
                    committed=committed,
                    lag=lags,
                    segments=0,
                    disk_bytes=0,
                )
            )
        summary = self._summary()
        settings: dict[str, object] = {
            "name": self.name,
            "region": self._region,
            "endpoint_url": self._endpoint_url,
            "open_shards": summary.get("OpenShardCount"),
            "retention_hours": summary.get("RetentionPeriodHours"),
            "stream_status": summary.get("StreamStatus"),
            "state_url": self._safe_state_url,
            "lag_probe_records": self._probe_records,
            "lag_ttl": self._lag_ttl,
        }
        return StreamStatus("kinesis", rows, 0, settings=settings)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.dispose()
        close = getattr(self._client, "close", None)
        if callable(close):
            close()

    # -- appending -------------------------------------------------------------------------

    def _put(
        self, entries: list[dict[str, Any]], pending: list[int], acks: list[Ack | None]
    ) -> None:
        """Store `entries[i]` for i in `pending`, filling `acks`; retry throttled entries."""
        for attempt in range(self._put_attempts):
            if attempt:
                time.sleep(backoff_seconds(attempt))
            response = self._call(
                "put_records", StreamName=self.name, Records=[entries[i] for i in pending]
            )
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
        with self._lock:
            for shard, position in acks:
                if position > self._tips.get(shard, -1):
                    self._tips[shard] = position
            if any(shard not in self._shards for shard in self._tips):
                self._shards = self._list_shards()  # the stream was resharded

    # -- reading ---------------------------------------------------------------------------

    def _get_records(
        self, shard: str, after: Position | None, iterator: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """One GetRecords (following a few empty pages); a fresh iterator when the given one
        is missing or expired. Returns records, the next iterator and MillisBehindLatest."""
        from botocore.exceptions import BotoCoreError, ClientError

        behind = 0
        for _ in range(EMPTY_PAGES):
            if iterator is None:
                iterator = self._new_iterator(shard, after)
            try:
                page = self._client.get_records(ShardIterator=iterator, Limit=limit)
            except ClientError as err:
                if _code(err) != "ExpiredIteratorException":
                    raise self._translate(err, "get_records") from err
                iterator = None
                continue
            except BotoCoreError as err:
                raise self._translate(err, "get_records") from err
            records = page.get("Records", [])
            next_iterator = page.get("NextShardIterator")
            behind = int(page.get("MillisBehindLatest", 0))
            if records or not behind or next_iterator is None:
                return records, next_iterator, behind
            iterator = next_iterator
        return [], iterator, behind

    def _new_iterator(self, shard: str, after: Position | None) -> str:
        options: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
        if after is not None:
            options = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": str(after),
            }
        response = self._call("get_shard_iterator", StreamName=self.name, ShardId=shard, **options)
        return str(response["ShardIterator"])

    def _take_iterator(self, shard: str, after: Position | None) -> str | None:
        """The iterator a previous read left for the next read after `after`, if still fresh."""
        with self._lock:
            cached = self._iterators.pop((shard, after), None)
        if cached is None or time.monotonic() - cached[1] > ITERATOR_MAX_AGE:
            return None
        return cached[0]

    def _keep_iterator(self, shard: str, after: Position | None, iterator: str) -> None:
        with self._lock:
            if len(self._iterators) >= 16 * max(1, len(self._shards)):
                self._iterators.pop(next(iter(self._iterators)))
            self._iterators[(shard, after)] = (iterator, time.monotonic())

    # -- lag and status ----------------------------------------------------------------------

    def _committed_by_shard(self, consumer: str) -> dict[str, Position]:
        return {
            c.shard: int(c.position)
            for c in self._checkpoints.all(self.name)
            if c.consumer == consumer
        }

    def _cached_lag(self, consumer: str, shard: str) -> Lag | None:
        with self._lock:
            cached = self._lags.get((consumer, shard))
        if cached is None or time.monotonic() - cached[1] >= self._lag_ttl:
            return None
        return cached[0]

    def _lag(self, consumer: str, shard: str, committed: Position | None) -> Lag:
        lag = self._cached_lag(consumer, shard)
        if lag is not None:
            return lag
        started = time.monotonic()
        lag = _estimate_lag(self._scan(shard, committed, self._probe_records), time.time())
        with self._lock:
            self._lags[(consumer, shard)] = (lag, started)
        return lag

    def _scan(self, shard: str, after: Position | None, cap: int) -> _Scan:
        """Read up to `cap` records after `after` (without touching the read iterators)."""
        count = nbytes = behind = 0
        first_arrival = last_arrival = None
        last: Position | None = None
        iterator: str | None = None
        while count < cap:
            start = after if last is None else last
            records, iterator, behind = self._get_records(
                shard, start, iterator, min(cap - count, MAX_GET_RECORDS)
            )
            if not records:
                break
            for r in records:
                nbytes += len(r["Data"]) + len(r["PartitionKey"].encode())
            count += len(records)
            arrivals = [r["ApproximateArrivalTimestamp"].timestamp() for r in records]
            first_arrival = arrivals[0] if first_arrival is None else first_arrival
            last_arrival = arrivals[-1]
            last = int(records[-1]["SequenceNumber"])
            if not behind or iterator is None:
                break
        if last is not None and not behind:
            self._note_tips([Ack(shard, last)])
        return _Scan(count, nbytes, first_arrival, last_arrival, last, behind, count >= cap)

    def _first_position(self, shard: str) -> Position | None:
        records, _, _ = self._get_records(shard, None, None, 1)
        return int(records[0]["SequenceNumber"]) if records else None

    def _last_position(
        self, shard: str, first: Position | None, committed: Iterable[Position | None]
    ) -> Position | None:
        """The newest position: known from appends and reads, else found by reading from the
        furthest commit to the end (at most 100 000 records)."""
        if first is None:
            return None
        with self._lock:
            tip = self._tips.get(shard)
        start = max((c for c in committed if c is not None), default=None)
        if tip is not None and tip >= (first if start is None else start):
            return tip
        scan = self._scan(shard, start, 10 * MAX_GET_RECORDS)
        if scan.last_position is not None:
            return scan.last_position
        return first if start is None else max(first, start)

    def _summary(self) -> dict[str, Any]:
        response = self._call("describe_stream_summary", StreamName=self.name)
        return dict(response["StreamDescriptionSummary"])

    # -- setup and errors ------------------------------------------------------------------

    def _ensure_active(self, create: bool, wait_seconds: float) -> None:
        """Create the stream if missing (when `create`), then wait until it takes data."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + wait_seconds
        delay, created = 0.1, False
        while True:
            try:
                status = self._client.describe_stream_summary(StreamName=self.name)[
                    "StreamDescriptionSummary"
                ]["StreamStatus"]
            except BotoCoreError as err:
                raise self._translate(err, "describe_stream_summary") from err
            except ClientError as err:
                if _code(err) != "ResourceNotFoundException":
                    raise self._translate(err, "describe_stream_summary") from err
                if not create:
                    raise ConfigError(
                        f"Kinesis stream {self.name} does not exist in {self._region}"
                    ) from None
                status = "CREATING"
                if not created:
                    try:
                        self._client.create_stream(
                            StreamName=self.name, ShardCount=self._shard_count
                        )
                    except ClientError as err:
                        if _code(err) != "ResourceInUseException":  # created meanwhile
                            raise self._translate(err, "create_stream") from err
                    created = True
                    log.info("created kinesis stream %s (%d shards)", self.name, self._shard_count)
            if status in ("ACTIVE", "UPDATING"):
                return
            if status == "DELETING" or time.monotonic() > deadline:
                raise TransientError(
                    f"Kinesis stream {self.name} is {status}, not ACTIVE "
                    f"(waited {wait_seconds:.0f} s)"
                )
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    def _list_shards(self) -> list[str]:
        shards: list[str] = []
        options: dict[str, Any] = {"StreamName": self.name}
        while True:
            response = self._call("list_shards", **options)
            shards.extend(s["ShardId"] for s in response.get("Shards", []))
            token = response.get("NextToken")
            if not token:
                return sorted(shards)
            options = {"NextToken": token}

    def _check_shard(self, shard: str) -> None:
        if shard in self._shards:
            return
        with self._lock:
            self._shards = self._list_shards()
        if shard not in self._shards:
            raise TerminalError(f"no shard {shard!r} in Kinesis stream {self.name}")

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: dict[str, Any] = getattr(self._client, operation)(**params)
        except (BotoCoreError, ClientError) as err:
            raise self._translate(err, operation) from err
        return response

    def _translate(self, err: Exception, operation: str) -> Exception:
        """A MadError saying what failed and whether retrying can help."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"Kinesis {operation} on stream {self.name}"
        if isinstance(err, ClientError):
            code = _code(err)
            message = err.response.get("Error", {}).get("Message", "")
            if code == "ResourceNotFoundException":
                return TerminalError(f"{where}: stream or shard not found ({message})")
            if code in ("ValidationException", "InvalidArgumentException"):
                return TerminalError(f"{where}: {code}: {message}")
            return TransientError(f"{where}: {code}: {message}")
        if isinstance(err, BotoCoreError):
            return TransientError(f"{where}: {err}")
        return err



def _estimate_lag(scan: _Scan, now: float) -> Lag:
    """Turn a bounded scan into a Lag; see the module docstring for what is estimated."""
    if scan.records == 0 or scan.first_arrival is None or scan.last_arrival is None:
        return Lag(0, 0, 0.0)
    records, nbytes = scan.records, scan.bytes
    span = scan.last_arrival - scan.first_arrival
    if scan.full and scan.behind_ms > 0 and span >= 1.0:
        factor = 1.0 + scan.behind_ms / 1000 / span
        records, nbytes = round(records * factor), round(nbytes * factor)
    return Lag(records, nbytes, max(0.0, now - scan.first_arrival))


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class KinesisOptions(Options):
    """`ingest.stream.kinesis.*`: the data stream (created with `shards` when missing)."""

    stream_name: str = Field(EVENTS_STREAM, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    shards: int = Field(4, ge=1, le=500)
    create: bool = Field(True, description="create the stream when it does not exist")
    put_attempts: int = Field(8, ge=1, le=50, description="PutRecords rounds when throttled")
    lag_probe_records: int = Field(1000, ge=1, le=MAX_GET_RECORDS)


@STREAMS.register("kinesis", KinesisOptions)
def open_kinesis(*, context: StreamContext, stream_name: str, shards: int, create: bool,
                 put_attempts: int, lag_probe_records: int) -> KinesisStream:
    """The `kinesis` backend: endpoint and credentials from `aws`, checkpoints in the state
    database."""
    aws = context.aws
    return KinesisStream(
        stream_name=stream_name, shards=shards, create=create, put_attempts=put_attempts,
        lag_probe_records=lag_probe_records,
        endpoint_url=aws.endpoint_url if aws else None,
        region=aws.region if aws else "us-east-1",
        access_key_id=aws.access_key_id if aws else None,
        secret_access_key=aws.secret_access_key if aws else None,
        state_url=context.state_url, consumers=context.consumers)
