"""ETL runs, inputs and partitions in the state database, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from mad.state import EtlLedger, Written, open_state


@pytest.fixture
def ledger(state_url: str) -> Iterator[EtlLedger]:
    engine: Engine = open_state(state_url)
    yield EtlLedger(engine)
    engine.dispose()


def test_a_succeeded_run_marks_its_files_done(ledger: EtlLedger) -> None:
    run = ledger.start("events", "duckdb", [("a.jsonl.gz", 10), ("b.jsonl.gz", 20)])
    assert ledger.done_keys("events") == set()
    ledger.succeed(run, {"rows_in": 5, "rows_out": 3, "duplicates": 1, "quarantined": 1,
                         "late": 0, "partitions": 1},
                   [Written("md-transformed-logs", "date=2026-11-01/hour=00", 3, 1, 900)])
    assert ledger.done_keys("events") == {"a.jsonl.gz", "b.jsonl.gz"}
    assert ledger.done_keys("aggregates") == set()
    (row,) = ledger.recent_runs()
    assert row["status"] == "succeeded" and row["rows_in"] == 5 and row["duration_s"] >= 0
    (part,) = ledger.partitions("md-transformed-logs")
    assert part["rows"] == 3 and part["run_id"] == run


def test_failed_and_interrupted_runs_leave_files_pending(ledger: EtlLedger) -> None:
    failed = ledger.start("events", "duckdb", [("a", 1)])
    ledger.fail(failed, "disk full")
    ledger.start("events", "duckdb", [("b", 1)])  # the process dies here
    assert ledger.abandon_running() == 1
    assert ledger.done_keys("events") == set()
    assert ledger.totals() == {"failed": 2}
    retry = ledger.start("events", "duckdb", [("a", 1), ("b", 1)], attempt=2)
    ledger.succeed(retry, {}, [])
    assert ledger.done_keys("events") == {"a", "b"}


def test_reprocess_forgets_files_and_partitions_keep_the_latest_run(ledger: EtlLedger) -> None:
    first = ledger.start("events", "duckdb", [("a", 1)])
    ledger.succeed(first, {}, [Written("d", "date=2026-11-01/hour=00", 3, 1, 10)])
    assert ledger.forget("events", ["a", "unknown"]) == 1
    assert ledger.done_keys("events") == set()
    second = ledger.start("events", "duckdb", [("a", 1)])
    ledger.succeed(second, {}, [Written("d", "date=2026-11-01/hour=00", 4, 1, 12)])
    (part,) = ledger.partitions()
    assert (part["run_id"], part["rows"]) == (second, 4)
    third = ledger.start("events", "duckdb", [("b", 1)])
    ledger.succeed(third, {}, [Written("d", "date=2026-11-01/hour=00", 5, 2, 20)])
    assert ledger.sources("events", "d", "date=2026-11-01/hour=00") == {"a", "b"}
    assert ledger.sources("events", "d", "date=2026-11-02/hour=00") == set()
