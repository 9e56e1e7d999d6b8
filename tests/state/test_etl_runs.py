"""ETL runs, inputs, partitions, per-run counts, day versions against their aggregates and
unreadable raw files in the state database, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from mad.state import EtlLedger, UnreadableFiles, Written, open_state


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


def test_a_day_is_due_until_its_aggregates_are_recorded_for_its_latest_events(
    ledger: EtlLedger,
) -> None:
    windows = ["1m", "5m", "1h"]
    run = ledger.start("events", "duckdb", [("a", 1)])
    ledger.succeed(run, {}, [], changed_days=["2026-11-01", "2026-11-02"])
    assert ledger.aggregates_due(windows) == {"2026-11-01": (1, windows),
                                              "2026-11-02": (1, windows)}
    agg = ledger.start("aggregates", "duckdb", [])
    ledger.succeed(agg, {}, [], aggregated=[(w, "2026-11-01", 1) for w in windows])
    assert ledger.aggregates_due(windows) == {"2026-11-02": (1, windows)}
    failed = ledger.start("aggregates", "duckdb", [])
    ledger.fail(failed, "killed")  # a failed aggregation records nothing: still due
    assert list(ledger.aggregates_due(windows)) == ["2026-11-02"]
    again = ledger.start("events", "duckdb", [("b", 1)])
    ledger.succeed(again, {}, [], changed_days=["2026-11-01"])  # its events changed again
    assert ledger.aggregates_due(windows)["2026-11-01"] == (2, windows)
    assert ledger.aggregates_due(["1m"]) == {"2026-11-01": (2, ["1m"]),
                                             "2026-11-02": (1, ["1m"])}


def test_days_of_a_ledger_from_before_versions_are_adopted(ledger: EtlLedger) -> None:
    run = ledger.start("events", "duckdb", [("a", 1)])
    ledger.succeed(run, {}, [Written("md-transformed-logs", "date=2026-11-01/hour=00", 3, 1, 9),
                             Written("md-transformed-apm", "date=2026-11-02/hour=05", 3, 1, 9),
                             Written("md-quarantine", "date=2026-11-03/hour=00", 1, 1, 9)])
    assert ledger.unversioned_days() == ["2026-11-01", "2026-11-02"]
    ledger.adopt_days(["2026-11-01", "2026-11-02"], [("1m", "2026-11-01")])
    assert ledger.unversioned_days() == []
    assert ledger.aggregates_due(["1m", "1h"]) == {"2026-11-01": (1, ["1h"]),
                                                   "2026-11-02": (1, ["1m", "1h"])}


def test_counts_beyond_the_columns_are_kept_per_run(ledger: EtlLedger) -> None:
    first = ledger.start("events", "duckdb", [("a", 1)])
    ledger.succeed(first, {"rows_in": 5, "reused": 2, "unreadable": 1}, [])
    second = ledger.start("events", "duckdb", [("b", 1)])
    ledger.succeed(second, {"rows_in": 3, "reused": 1, "unreadable": 0}, [])
    failed = ledger.start("events", "duckdb", [("c", 1)])
    ledger.fail(failed, "boom")
    assert ledger.run_counts([first, failed]) == {first: {"reused": 2, "unreadable": 1}}
    assert ledger.count_totals("events") == {"reused": 3, "unreadable": 1}
    assert ledger.count_totals("compact") == {}


def test_unreadable_files_count_their_attempts(state_url: str) -> None:
    engine: Engine = open_state(state_url)
    files = UnreadableFiles(engine)
    assert files.attempt("k1", "truncated") == 1
    assert files.attempt("k1", "corrupt") == 2
    assert files.attempt("k2", "truncated") == 1
    assert files.known(["k1", "k3"]) == {"k1": (2, "corrupt")}
    files.clear(["k1"])
    assert [r["key"] for r in files.all()] == ["k2"]
    engine.dispose()
