"""Reading a Kinesis shard page by page: GetRecords behind shard iterators.

A read after a position needs a shard iterator (GetShardIterator, AFTER_SEQUENCE_NUMBER or
TRIM_HORIZON); the iterator GetRecords returns for the next page is kept, so a consumer
reading on from where it stopped costs one call, not two. Iterators expire after 300 s, so a
kept one is used for at most `ITERATOR_MAX_AGE`; an expired one is replaced. GetRecords may
answer empty pages before it reaches data (`MillisBehindLatest` > 0): a few are followed.
Both the adapter's reads and the lag probe (`lag.py`) read through here.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mad.ingest.streams.base import Position
from mad.ingest.streams.kinesis.client import call, error_code, translate

MAX_GET_RECORDS = 10_000
ITERATOR_MAX_AGE = 240.0  # Kinesis shard iterators expire after 300 s
EMPTY_PAGES = 5  # GetRecords may return empty pages before reaching data; follow a few
KEPT_PER_SHARD = 16

Page = tuple[list[dict[str, Any]], str | None, int]
"""GetRecords records, the next iterator (None at a closed shard's end), MillisBehindLatest."""


class ShardPages:
    """GetRecords on one stream, with the iterators of earlier reads kept for the next."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self._client, self.name = client, stream_name
        self._lock = threading.Lock()
        self._iterators: dict[tuple[str, Position | None], tuple[str, float]] = {}

    def get(self, shard: str, after: Position | None, iterator: str | None, limit: int) -> Page:
        """One GetRecords (following a few empty pages); a fresh iterator when the given one
        is missing or expired."""
        from botocore.exceptions import BotoCoreError, ClientError

        behind = 0
        for _ in range(EMPTY_PAGES):
            if iterator is None:
                iterator = self._new_iterator(shard, after)
            try:
                page = self._client.get_records(ShardIterator=iterator, Limit=limit)
            except ClientError as err:
                if error_code(err) != "ExpiredIteratorException":
                    raise translate(err, "get_records", self.name) from err
                iterator = None
                continue
            except BotoCoreError as err:
                raise translate(err, "get_records", self.name) from err
            records = page.get("Records", [])
            next_iterator = page.get("NextShardIterator")
            behind = int(page.get("MillisBehindLatest", 0))
            if records or not behind or next_iterator is None:
                return records, next_iterator, behind
            iterator = next_iterator
        return [], iterator, behind

    def take(self, shard: str, after: Position | None) -> str | None:
        """The iterator a previous read left for the next read after `after`, if still fresh."""
        with self._lock:
            cached = self._iterators.pop((shard, after), None)
        if cached is None or time.monotonic() - cached[1] > ITERATOR_MAX_AGE:
            return None
        return cached[0]

    def keep(self, shard: str, after: Position | None, iterator: str, shards: int) -> None:
        """Remember `iterator` for the next read after `after` (a bounded number per shard)."""
        with self._lock:
            if len(self._iterators) >= KEPT_PER_SHARD * max(1, shards):
                self._iterators.pop(next(iter(self._iterators)))
            self._iterators[(shard, after)] = (iterator, time.monotonic())

    def _new_iterator(self, shard: str, after: Position | None) -> str:
        options: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
        if after is not None:
            options = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": str(after),
            }
        response = call(self._client, self.name, "get_shard_iterator", StreamName=self.name,
                        ShardId=shard, **options)
        return str(response["ShardIterator"])
