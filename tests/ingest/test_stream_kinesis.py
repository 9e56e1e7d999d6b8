"""The Kinesis stream against a real moto server on loopback, checkpoints in SQLite: what
only this backend does (creating the stream, batching and retrying PutRecords, estimating
lag). What every backend promises is in `test_stream_contract.py`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from tests.conftest import free_port

from mad.config import AwsSettings
from mad.errors import ConfigError, TerminalError, TransientError
from mad.ingest.streams import STREAMS, Ack, StreamContext, StreamRecord
from mad.ingest.streams.kinesis import (
    KinesisStream,
    backoff_seconds,
    plan_batches,
    settle_put_response,
)

SERVICES = ["payments", "accounts", "cards", "loans", "auth", "notifications"]


def _open(
    moto_url: str, tmp_path: Path, name: str, shards: int = 3, lag_ttl: float = 5.0
) -> KinesisStream:
    return KinesisStream(
        stream_name=name,
        shards=shards,
        endpoint_url=moto_url,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        wait_seconds=20,
        lag_ttl=lag_ttl,
    )


def _read_all(
    stream: KinesisStream, shard: str, after: int | None, page: int
) -> list[StreamRecord]:
    out: list[StreamRecord] = []
    while True:
        batch = stream.read(shard, after, page)
        if not batch:
            return out
        out.extend(batch)
        after = batch[-1].position


def test_opening_by_name_creates_the_stream(aws: AwsSettings, tmp_path: Path) -> None:
    name = f"named-{uuid.uuid4().hex[:8]}"
    context = StreamContext(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", aws=aws)
    stream = STREAMS.create("kinesis", {"stream_name": name, "shards": 1}, context=context)
    try:
        assert stream.shards() == ["shardId-000000000000"]
        assert stream.read("shardId-000000000000", None, 10) == []
        assert isinstance(stream, KinesisStream)
        status = stream.status()
        assert status.disk_bytes == 0 and status.settings["stream_status"] == "ACTIVE"
        assert [(row.segments, row.disk_bytes) for row in status.shards] == [(0, 0)]
    finally:
        stream.close()
    again = STREAMS.create("kinesis", {"stream_name": name, "shards": 3, "create": False},
                           context=context)  # an existing stream keeps its own shard count
    try:
        assert again.shards() == ["shardId-000000000000"]
    finally:
        again.close()


def test_a_missing_stream_without_create_is_a_config_error(
    aws: AwsSettings, tmp_path: Path
) -> None:
    name = f"missing-{uuid.uuid4().hex[:8]}"
    context = StreamContext(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", aws=aws)
    with pytest.raises(ConfigError, match=f"Kinesis stream {name} does not exist"):
        STREAMS.create("kinesis", {"stream_name": name, "create": False}, context=context)


def test_lag_counts_then_drops_to_zero_after_commit(moto_url: str, tmp_path: Path) -> None:
    name = f"lag-{uuid.uuid4().hex[:8]}"
    with _open(moto_url, tmp_path, name, shards=2, lag_ttl=0.0) as stream:
        assert all(lag.records == 0 for lag in stream.lag("writer").values())
        records = [("payments", b"x" * 100)] * 7 + [("cards", b"y" * 50)] * 5
        acks = stream.append(records)
        time.sleep(0.05)
        lags = stream.lag("writer")
        assert sum(lag.records for lag in lags.values()) == 12
        assert sum(lag.bytes for lag in lags.values()) == 7 * 108 + 5 * 55
        assert all(lag.age_seconds > 0 for lag in lags.values() if lag.records)
        for shard in {a.shard for a in acks}:
            stream.commit("writer", shard, max(a.position for a in acks if a.shard == shard))
        assert all(lag == type(lag)(0, 0, 0.0) for lag in stream.lag("writer").values())


def test_append_refuses_a_record_kinesis_cannot_take(moto_url: str, tmp_path: Path) -> None:
    with _open(moto_url, tmp_path, f"big-{uuid.uuid4().hex[:8]}", shards=1) as stream:
        with pytest.raises(TerminalError, match="too large"):
            stream.append([("payments", b"x" * (2**20))])
        with pytest.raises(TerminalError, match="key"):
            stream.append([("", b"x")])


def test_large_append_is_split_into_batches(moto_url: str, tmp_path: Path) -> None:
    with _open(moto_url, tmp_path, f"batch-{uuid.uuid4().hex[:8]}", shards=2) as stream:
        records = [(SERVICES[i % 2], b"z" * 12_000) for i in range(1100)]  # 13 MB, 1100 rows
        acks = stream.append(records)
        assert len(acks) == 1100
        counts = {s: len(_read_all(stream, s, None, 10_000)) for s in stream.shards()}
        assert sum(counts.values()) == 1100


def test_plan_batches_respects_both_limits() -> None:
    assert plan_batches([]) == []
    assert plan_batches([1] * 1200) == [range(0, 500), range(500, 1000), range(1000, 1200)]
    mib = 2**20
    assert plan_batches([mib] * 12) == [range(0, 5), range(5, 10), range(10, 12)]
    assert plan_batches([3, 3, 3], max_records=10, max_bytes=5) == [
        range(0, 1),
        range(1, 2),
        range(2, 3),
    ]


def test_partial_failure_retries_only_failed_entries(moto_url: str, tmp_path: Path) -> None:
    """A real PutRecords response with some entries turned into the failures Kinesis sends
    under throttling: only those are sent again, and they end up stored and acknowledged."""
    with _open(moto_url, tmp_path, f"retry-{uuid.uuid4().hex[:8]}", shards=2) as stream:
        entries: list[dict[str, object]] = [
            {"Data": f"r{i}".encode(), "PartitionKey": SERVICES[i % 3]} for i in range(6)
        ]
        response = stream._client.put_records(StreamName=stream.name, Records=entries)
        assert response["FailedRecordCount"] == 0
        response["Records"][1] = {
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": "Rate exceeded for shard shardId-000000000001",
        }
        response["Records"][4] = {"ErrorCode": "InternalFailure", "ErrorMessage": "retry"}
        response["FailedRecordCount"] = 2
        indexes = [10, 11, 12, 13, 14, 15]
        outcome = settle_put_response(response, indexes)
        assert outcome.retry == [11, 14] and outcome.refused == []
        assert sorted(outcome.acks) == [10, 12, 13, 15]
        assert outcome.acks[12][:2] == Ack(
            response["Records"][2]["ShardId"], int(response["Records"][2]["SequenceNumber"])
        )[:2]
        assert abs(outcome.acks[12].appended_at - time.time()) < 60  # when the answer came

        # the retry path of append: send the two failed entries again, fill the gaps
        acks: list[Ack | None] = [None] * 16
        for index, ack in outcome.acks.items():
            acks[index] = ack
        padded: list[dict[str, object]] = [{} for _ in range(10)]
        padded.extend(entries)
        stream._put(padded, outcome.retry, acks)
        assert all(acks[i] is not None for i in indexes)
        stored = {
            (r.shard, r.position): r.payload
            for s in stream.shards()
            for r in _read_all(stream, s, None, 100)
        }
        for i in (11, 14):
            retried = acks[i]
            assert retried is not None
            assert stored[(retried.shard, retried.position)] == f"r{i - 10}".encode()

        refused = dict(response)
        refused["Records"] = [*response["Records"][:5], {"ErrorCode": "KMSAccessDeniedException"}]
        assert settle_put_response(refused, range(6)).refused == [
            (5, "KMSAccessDeniedException", "")
        ]
        with pytest.raises(TransientError):
            settle_put_response(response, indexes[:3])


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_seconds(n, base=0.1, cap=1.0) for n in range(1, 10)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.2 <= delays[2] <= 0.4
    assert all(0.5 <= d <= 1.0 for d in delays[5:])


def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError):
        KinesisStream(
            stream_name="nowhere",
            client_attempts=1,
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            access_key_id="testing",
            secret_access_key="testing",
            state_url=f"sqlite:///{tmp_path / 'state.db'}",
        )
