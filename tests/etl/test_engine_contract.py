"""What every registered engine does besides running a plan's outputs, checked the same way on
each: `query` returns a step's rows, `count_rows` counts Parquet rows, `rewrite` keeps every
row in order at about the target size, the quarantine anti-join (`known_lines_plan`) drops
exactly the known lines, and `unreadable` names the raw `.gz` files that cannot be read
whole. A new engine adds a line to `ENGINES_UNDER_TEST`.

Spark runs in `local[2]` on one session per module (its cases are marked `spark`).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mad.etl.engines import ENGINES, Engine
from mad.etl.transforms.events import events_plan, partitions_plan
from mad.etl.transforms.quarantine import COLUMNS, known_lines_plan
from tests.etl.conftest_spark import spark_fixture

spark = spark_fixture()

# name -> how a test builds that engine
Build = Callable[[pytest.FixtureRequest, Path], Engine]
ENGINES_UNDER_TEST: dict[str, Build] = {
    "duckdb": lambda request, tmp: ENGINES.create(
        "duckdb", {"memory_limit": "1GB", "threads": 2, "temp_directory": str(tmp / "spill")}),
    "spark": lambda request, tmp: ENGINES.create(
        "spark", session=request.getfixturevalue("spark")),
}
MARKS = {"spark": [pytest.mark.spark]}
HOUR_DIR = "md-raw-logs/service=auth/year=2026/month=11/day=01/hour=06"


def test_every_registered_engine_is_under_contract() -> None:
    assert sorted(ENGINES_UNDER_TEST) == ENGINES.names()


@pytest.fixture(params=[pytest.param(n, marks=MARKS.get(n, [])) for n in sorted(
    ENGINES_UNDER_TEST)])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    made = ENGINES_UNDER_TEST[request.param](request, tmp_path)
    yield made
    made.close()


def raw_file(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "lake" / HOUR_DIR / ("part-" + "a" * 32 + ".jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def event(event_id: str, timestamp: object) -> str:
    return json.dumps({"event_id": event_id, "timestamp": timestamp, "service": "auth",
                       "event_type": "auth.token.issued", "kind": "log"})


def test_query_returns_the_rows_of_one_step(any_engine: Engine, tmp_path: Path) -> None:
    raw = raw_file(tmp_path, [event("a", "2026-11-01T06:10:00Z"),
                              event("b", "2026-11-01T03:59:59+00:00"),
                              event("c", 1_793_512_800.5), "{not json", ""])
    rows = any_engine.query(partitions_plan(), [raw], {}, "partitions")
    assert sorted((r["date"], r["hour"]) for r in rows) == [("2026-11-01", "03"),
                                                           ("2026-11-01", "06")]
    assert not (tmp_path / "out").exists()  # nothing written
    with pytest.raises(KeyError):
        any_engine.query(partitions_plan(), [raw], {}, "no_such_step")


def write(path: Path, columns: dict[str, list[Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, compression="snappy")
    return str(path)


def test_count_rows_counts_every_file(any_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "d" / "date=2026-11-01" / "hour=06"
    files = [write(folder / f"part-{n}.parquet", {"i": list(range(n * 100))})
             for n in (1, 2, 3)]
    assert any_engine.count_rows(files) == 600
    assert any_engine.count_rows(files[:1]) == 100
    assert any_engine.count_rows([]) == 0


def test_rewrite_keeps_every_row_in_order_at_about_the_target_size(
    any_engine: Engine, tmp_path: Path,
) -> None:
    folder = tmp_path / "lake" / "ds" / "date=2026-11-01" / "hour=07"
    sources = []
    for n in range(3):  # the middle file lacks the newer column `note`
        ids = list(range(n * 40_000, (n + 1) * 40_000))
        columns: dict[str, list[Any]] = {
            "i": ids, "s": [f"{i:08d}-{(i * 7919) % 100_003:06d}" * 3 for i in ids]}
        if n != 1:
            columns["note"] = [f"n{i}" if i % 3 else None for i in ids]
        sources.append(write(folder / f"part-{n}.parquet", columns))
    size = sum(Path(f).stat().st_size for f in sources)
    target = size // 4
    out = tmp_path / "stage" / "out" / "compact" / "date=2026-11-01" / "hour=07"
    written = any_engine.rewrite(sources, size, str(out), target)
    assert [Path(f).name for f in written] == [f"part-{i}.parquet" for i in range(len(written))]
    assert 3 <= len(written) <= 6
    assert all(Path(f).stat().st_size <= 1.5 * target for f in written)
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f).name for f in written)
    listing = ", ".join(f"'{f}'" for f in written)
    got = duckdb.sql(f"SELECT * FROM read_parquet([{listing}], union_by_name = true, "
                     f"hive_partitioning = false)")
    assert sorted(got.columns) == ["i", "note", "s"]  # no Hive columns added
    want = duckdb.sql(f"SELECT {', '.join(got.columns)} FROM read_parquet("
                      f"[{', '.join(repr(s) for s in sources)}], union_by_name = true, "
                      f"hive_partitioning = false)").fetchall()
    assert got.fetchall() == want  # every row, as stored, in the sources' order
    empty = write(tmp_path / "empty" / "part-0.parquet", {"i": pa.array([], pa.int64())})
    assert any_engine.rewrite([empty], 100, str(tmp_path / "none"), target) == []


def quarantine_row(source: str, line_no: int, reason: str = "invalid_json") -> dict[str, Any]:
    return {"reason": reason, "line": f"line {line_no} of {source}", "source_file": source,
            "line_no": line_no, "ingest_hour": datetime(2026, 11, 1, 6)}


def quarantine_file(path: Path, rows: list[dict[str, Any]]) -> str:
    schema = pa.schema([("reason", pa.string()), ("line", pa.string()),
                        ("source_file", pa.string()), ("line_no", pa.int64()),
                        ("ingest_hour", pa.timestamp("us"))])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema), path)
    return str(path)


def test_known_lines_plan_drops_exactly_the_lines_the_live_partition_holds(
    any_engine: Engine, tmp_path: Path,
) -> None:
    six, seven = "date=2026-11-01/hour=06", "date=2026-11-01/hour=07"
    staged = [
        quarantine_file(tmp_path / "stage" / six / "part-a.parquet",
                        [quarantine_row("f1", n) for n in (1, 2, 3)]),
        quarantine_file(tmp_path / "stage" / seven / "part-b.parquet",
                        [quarantine_row("f2", n) for n in (1, 2)]),
    ]
    known = [quarantine_file(tmp_path / "live" / six / "part-k.parquet",
                             [quarantine_row("f1", 2), quarantine_row("f1", 9),
                              quarantine_row("f2", 1)])]  # f2:1 lives elsewhere: still known
    counts = any_engine.execute(known_lines_plan(), [], {"staged": staged, "known": known},
                                str(tmp_path / "kept"))
    assert (counts["count_staged"], counts["quarantine"]) == (5, 3)
    kept = {}
    for f in sorted((tmp_path / "kept" / "quarantine").rglob("*.parquet")):
        part = f.parent.relative_to(tmp_path / "kept" / "quarantine").as_posix()
        table = pq.ParquetFile(f).read()
        assert table.column_names == [c for c, _ in COLUMNS if c not in ("date", "hour")]
        kept.setdefault(part, []).extend(table.to_pylist())
    assert {p: sorted((r["source_file"], r["line_no"]) for r in rows)
            for p, rows in kept.items()} == {six: [("f1", 1), ("f1", 3)], seven: [("f2", 2)]}
    assert kept[six][0] == {k: v for k, v in quarantine_row("f1", kept[six][0]["line_no"]).items()}


def test_the_quarantine_columns_are_those_of_the_events_plan(engine: Engine,
                                                             tmp_path: Path) -> None:
    """`known_lines_plan` names the columns of the events plan's quarantine output."""
    raw = raw_file(tmp_path, ["{not json", event("ok", "2026-11-01T06:00:00Z")])
    engine.execute(events_plan(), [raw], {"existing": []}, str(tmp_path / "out"))
    (written,) = (tmp_path / "out" / "quarantine").rglob("*.parquet")
    types = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{written}', "
                       f"hive_partitioning = true, hive_types_autocast = false)").fetchall()
    assert [(name, typ) for name, typ, *_ in types] == list(COLUMNS)


def test_unreadable_names_the_gz_files_that_cannot_be_read_whole(
    any_engine: Engine, tmp_path: Path,
) -> None:
    folder = tmp_path / "lake" / HOUR_DIR
    folder.mkdir(parents=True)
    body = gzip.compress(("\n".join(event(f"e{i}", "2026-11-01T06:10:00Z")
                                    for i in range(2000)) + "\n").encode(), 1)
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0xFF
    files = {"whole": body, "two-members": body + body, "cut": body[: len(body) // 2],
             "flipped": bytes(flipped), "empty": b"", "not-gzip": b'{"a": 1}\n'}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"part-{name}.jsonl.gz"
        paths[name].write_bytes(data)
    plain = folder / "part-plain.jsonl"
    plain.write_text("{cut in the middle")  # nothing to check: a broken line is quarantined
    found = any_engine.unreadable([str(p) for p in [*paths.values(), plain]])
    assert set(found) <= {str(p) for p in paths.values()}  # named as given
    assert sorted(Path(f).name for f in found) == sorted(
        f"part-{n}.jsonl.gz" for n in ("cut", "flipped", "empty", "not-gzip"))
    assert "truncated" in found[str(paths["cut"])]
    assert "incorrect data check" in found[str(paths["flipped"])]
    assert any_engine.unreadable([]) == {}
