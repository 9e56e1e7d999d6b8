"""The acknowledgement counts and the writer's landed positions, on SQLite and PostgreSQL:
counts add up across flushes (and API processes), positions as large as Kinesis sequence
numbers keep every digit, and the landed position of a shard is the lowest of its writers."""

from __future__ import annotations

from mad.state import IngestAcks, open_state

KINESIS = 49590338271490256608559692538361571095921575989136588898  # a real-sized sequence


def test_counts_add_up_and_positions_keep_every_digit(state_url: str) -> None:
    acks = IngestAcks(open_state(state_url))
    hour = 1_793_512_800
    acks.add({("shardId-000", hour): (500, KINESIS), ("shardId-001", hour): (2, 7)})
    acks.add({("shardId-000", hour): (250, KINESIS - 10),
              ("shardId-000", hour + 3600): (1, KINESIS + 5)})
    again = IngestAcks(open_state(state_url))  # another process reads the same rows
    assert again.acked() == {("shardId-000", hour): (750, KINESIS),
                             ("shardId-001", hour): (2, 7),
                             ("shardId-000", hour + 3600): (1, KINESIS + 5)}

    acks.progress("raw-writer", {"shardId-000": KINESIS, "shardId-001": 3})
    acks.progress("raw-writer", {"shardId-001": 9})
    acks.progress("raw-writer-b", {"shardId-000": KINESIS - 1})
    assert again.landed_through() == {"shardId-000": KINESIS - 1, "shardId-001": 9}
