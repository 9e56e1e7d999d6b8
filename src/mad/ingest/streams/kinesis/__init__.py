"""The `kinesis` stream backend: Amazon Kinesis Data Streams (or an emulator) through boto3.

The adapter is `stream.py` (`KinesisStream`); around it: PutRecords planning and retries
(`put.py`), GetRecords pages and shard iterators (`pages.py`), lag estimation for the
monitor (`lag.py`), creating and awaiting the stream and listing its shards
(`provision.py`), and the boto3 client and its errors (`client.py`). boto3 is imported only
when a stream is opened, so registering the backend is cheap.
"""

from __future__ import annotations

from pydantic import Field

from mad.ingest.streams.base import STREAMS, StreamContext
from mad.ingest.streams.kinesis.pages import MAX_GET_RECORDS
from mad.ingest.streams.kinesis.put import backoff_seconds, plan_batches, settle_put_response
from mad.ingest.streams.kinesis.setup_check import check as setup_check  # noqa: F401  (registers `mad doctor`'s check)
from mad.ingest.streams.kinesis.stream import KinesisStream
from mad.lake import EVENTS_STREAM
from mad.registry import Options

__all__ = [
    "KinesisOptions",
    "KinesisStream",
    "backoff_seconds",
    "open_kinesis",
    "plan_batches",
    "settle_put_response",
]


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
    database. Kinesis has no roles: every process opens the same stream the same way."""
    aws = context.aws
    return KinesisStream(
        stream_name=stream_name, shards=shards, create=create, put_attempts=put_attempts,
        lag_probe_records=lag_probe_records,
        endpoint_url=aws.endpoint_url if aws else None,
        region=aws.region if aws else "us-east-1",
        access_key_id=aws.access_key_id if aws else None,
        secret_access_key=aws.secret_access_key if aws else None,
        state_url=context.state_url, consumers=context.consumers)
