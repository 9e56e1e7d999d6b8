"""Making sure the Kinesis data stream exists and takes data, and listing its shards.

Run when the backend opens: a missing stream is created with the configured shard count
(when `create` is on; else a ConfigError names it), then awaited until ACTIVE, since a new
stream refuses records while CREATING. An existing stream keeps its own shard count.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mad.errors import ConfigError, TransientError
from mad.ingest.streams.kinesis.client import call, error_code, translate

log = logging.getLogger(__name__)


def ensure_active(client: Any, name: str, shards: int, create: bool, wait_seconds: float,
                  region: str) -> None:
    """Create the stream if missing (when `create`), then wait until it takes data."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + wait_seconds
    delay, created = 0.1, False
    while True:
        try:
            status = client.describe_stream_summary(StreamName=name)[
                "StreamDescriptionSummary"
            ]["StreamStatus"]
        except BotoCoreError as err:
            raise translate(err, "describe_stream_summary", name) from err
        except ClientError as err:
            if error_code(err) != "ResourceNotFoundException":
                raise translate(err, "describe_stream_summary", name) from err
            if not create:
                raise ConfigError(f"Kinesis stream {name} does not exist in {region}") from None
            status = "CREATING"
            if not created:
                try:
                    client.create_stream(StreamName=name, ShardCount=shards)
                except ClientError as err:
                    if error_code(err) != "ResourceInUseException":  # created meanwhile
                        raise translate(err, "create_stream", name) from err
                created = True
                log.info("created kinesis stream %s (%d shards)", name, shards)
        if status in ("ACTIVE", "UPDATING"):
            return
        if status == "DELETING" or time.monotonic() > deadline:
            raise TransientError(
                f"Kinesis stream {name} is {status}, not ACTIVE (waited {wait_seconds:.0f} s)"
            )
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def list_shards(client: Any, name: str) -> list[str]:
    """Every shard id of the stream, sorted (ListShards, all pages)."""
    shards: list[str] = []
    options: dict[str, Any] = {"StreamName": name}
    while True:
        response = call(client, name, "list_shards", **options)
        shards.extend(s["ShardId"] for s in response.get("Shards", []))
        token = response.get("NextToken")
        if not token:
            return sorted(shards)
        options = {"NextToken": token}
