"""Checkpoints in the state database, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from mad.errors import ConfigError, TransientError
from mad.state import CheckpointStore, open_state
from tests.conftest import free_port


@pytest.fixture
def engine(state_url: str) -> Iterator[Engine]:
    engine = open_state(state_url)
    yield engine
    engine.dispose()


def test_schema_is_created_once_and_reopens(state_url: str) -> None:
    first = open_state(state_url)
    CheckpointStore(first).save("s", "c", "0", 1)
    first.dispose()
    again = open_state(state_url)  # create_all again is a no-op
    assert "stream_checkpoints" in inspect(again).get_table_names()
    columns = {c["name"] for c in inspect(again).get_columns("stream_checkpoints")}
    assert columns == {"stream", "consumer", "shard", "position", "updated_at"}
    assert inspect(again).get_pk_constraint("stream_checkpoints")["constrained_columns"] == [
        "stream",
        "consumer",
        "shard",
    ]
    assert CheckpointStore(again).load("s", "c", "0") == "1"
    again.dispose()


def test_save_load_upsert_and_all(engine: Engine) -> None:
    store = CheckpointStore(engine)
    assert store.load("events", "writer", "shard-0") is None
    assert store.all("events") == []
    before = datetime.now(UTC) - timedelta(seconds=1)
    store.save("events", "writer", "shard-0", 5)
    store.save("events", "writer", "shard-0", 9)  # upsert, not a second row
    store.save("events", "writer", "shard-1", 3)
    store.save("events", "audit", "shard-0", 1)
    store.save("other", "writer", "shard-0", 100)
    assert store.load("events", "writer", "shard-0") == "9"
    rows = store.all("events")
    assert [(r.consumer, r.shard, r.position) for r in rows] == [
        ("audit", "shard-0", "1"),
        ("writer", "shard-0", "9"),
        ("writer", "shard-1", "3"),
    ]
    for row in rows:
        assert row.updated_at.tzinfo is not None
        assert before <= row.updated_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert [r.position for r in store.all("other")] == ["100"]


def test_positions_wider_than_64_bits_round_trip(engine: Engine) -> None:
    store = CheckpointStore(engine)
    kinesis_like = 49_654_321_987_654_321_123_456_789_012_345_678_901_234_567_890_123_456
    store.save("k", "writer", "shardId-000000000000", kinesis_like)
    assert int(store.load("k", "writer", "shardId-000000000000") or 0) == kinesis_like


def test_concurrent_saves_keep_one_row_per_key(engine: Engine) -> None:
    store = CheckpointStore(engine)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                store.save("busy", f"c{worker % 2}", str(i % 3), worker * 1000 + i)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.all("busy")) == 6


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 1000
    engine.dispose()


def test_bad_urls_get_clear_errors() -> None:
    with pytest.raises(ConfigError, match="state database URL"):
        open_state("not a url")
    with pytest.raises(ConfigError, match="no driver"):
        open_state("nosuchdb://x/y")
    with pytest.raises(TransientError, match="cannot open state database") as caught:
        open_state(f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/x")
    assert "secret" not in str(caught.value)
