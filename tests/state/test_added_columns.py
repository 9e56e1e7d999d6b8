"""A state database made before a table gained a column gets the column when it is opened,
keeping its rows (on SQLite and on PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from mad.state import RawFileLedger, open_state


def test_a_column_added_since_is_added_to_an_existing_table(state_url: str) -> None:
    if state_url.startswith("sqlite"):
        Path(state_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    old = create_engine(state_url)
    with old.begin() as conn:  # raw_files as it was before it counted records per shard
        conn.execute(text(
            "CREATE TABLE raw_files (key VARCHAR(1024) PRIMARY KEY, dataset VARCHAR(64) NOT "
            "NULL, service VARCHAR(128), hour TIMESTAMP NOT NULL, records INTEGER NOT NULL, "
            "bytes BIGINT NOT NULL, counts TEXT NOT NULL, consumer VARCHAR(256) NOT NULL, "
            "written_at TIMESTAMP NOT NULL)"))
        conn.execute(text(
            "INSERT INTO raw_files VALUES ('md-raw-logs/a', 'md-raw-logs', 'auth', "
            "'2026-11-01 06:00:00', 3, 100, '{\"log\": 3}', 'w', '2026-11-01 06:01:00')"))
    old.dispose()

    engine = open_state(state_url)
    assert "shards" in {c["name"] for c in inspect(engine).get_columns("raw_files")}
    ledger = RawFileLedger(engine, "w")
    assert ledger.summary()["datasets"]["md-raw-logs"]["records"] == 3  # the old row is kept
    ledger.record("md-raw-logs/b", "md-raw-logs", "auth", 1_793_512_800, 2, 50, {"log": 2},
                  shards={"shard-0": 2})
    assert ledger.landed() == [("md-raw-logs/b", 1_793_512_800, {"shard-0": 2})]
    engine.dispose()
    open_state(state_url).dispose()  # opening again adds nothing twice
