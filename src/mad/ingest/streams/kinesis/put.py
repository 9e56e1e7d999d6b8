"""PutRecords, planned and settled: pure functions over sizes and responses.

Kinesis takes at most 500 records and 5 MiB per PutRecords call, and answers per entry:
stored (shard and sequence number), failed with a retryable code (throttling, an internal
failure), or refused. The adapter (`stream.py`) sends each planned batch, keeps the acks,
sends the retryable entries again after `backoff_seconds`, and gives up on a refusal.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from mad.errors import TransientError
from mad.ingest.streams.base import Ack

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 2**20
MAX_RECORD_BYTES = 2**20
MAX_KEY_CHARS = 256
RETRYABLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException"}
)


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
    answered = time.time()  # Kinesis stamps its arrival time only on the records it serves
    for index, entry in zip(indexes, entries, strict=True):
        code = entry.get("ErrorCode")
        if not code:
            outcome.acks[index] = Ack(entry["ShardId"], int(entry["SequenceNumber"]), answered)
        elif code in RETRYABLE_CODES:
            outcome.retry.append(index)
        else:
            outcome.refused.append((index, str(code), str(entry.get("ErrorMessage", ""))))
    return outcome


def backoff_seconds(attempt: int, base: float = 0.1, cap: float = 2.0) -> float:
    """Delay before retry number `attempt` (1, 2, ...): doubling from `base` up to `cap`,
    with jitter in [50%, 100%] so throttled writers spread out."""
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
