"""Datasets, partitions, files and the preview against the lake's folders, the ledgers
(sqlite3) and the files' own rows (DuckDB, gzip); the preview's paging bounds and the keys
it refuses."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import orjson
import pytest

from mad.errors import ConfigError
from mad.query.access import QueryError
from mad.query.datasets import DATASETS, datasets, files, partitions, preview
from mad.query.preview import MAX_LIMIT, MAX_LINE_BYTES
from tests.query.conftest import BuiltLake, copy_lake, duck, lake_settings


def data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name.endswith((".jsonl", ".jsonl.gz", ".parquet")))


def test_every_dataset_with_its_files_bytes_and_rows(pipeline_lake: BuiltLake) -> None:
    lake = pipeline_lake.lake
    got = {d["name"]: d for d in datasets(pipeline_lake.settings)}
    assert list(got) == list(DATASETS) and len(got) == 10
    con = sqlite3.connect(pipeline_lake.state_db)
    ledger = dict(con.execute("SELECT dataset, sum(records) FROM raw_files GROUP BY 1"))
    con.close()
    for name, d in got.items():
        found = data_files(lake / name)
        assert d["files"] == len(found) > 0, name
        assert d["bytes"] == sum(p.stat().st_size for p in found), name
        assert d["partitions"] == len({p.parent for p in found}), name
        if d["kind"] in ("raw", "errors"):
            assert d["rows"] == ledger[name]
        elif d["kind"] == "anomalies":
            assert d["rows"] is None  # no ledger counts them
        else:
            [(rows,)] = duck(f"SELECT count(*) FROM read_parquet('{lake / name}/**/"
                                   "*.parquet')")
            assert d["rows"] == rows, name


def test_partitions_and_files_of_a_dataset(pipeline_lake: BuiltLake) -> None:
    lake = pipeline_lake.lake
    for name in ("md-raw-logs", "md-transformed-metrics", "md-quarantine", "md-aggregates",
                 "md-anomalies"):
        got = partitions(pipeline_lake.settings, name)
        folders = sorted({p.parent.relative_to(lake / name).as_posix()
                          for p in data_files(lake / name)})
        assert [p["partition"] for p in got] == folders
        for part in got:
            listed = files(pipeline_lake.settings, name, part["partition"])
            on_disk = data_files(lake / name / part["partition"])
            assert [f["key"] for f in listed] == [p.relative_to(lake).as_posix()
                                                  for p in on_disk]
            assert part["files"] == len(listed)
            assert part["bytes"] == sum(f["bytes"] for f in listed)
            if name != "md-anomalies":
                assert part["rows"] is not None and part["last_modified"] is not None
    raw = partitions(pipeline_lake.settings, "md-raw-logs")[0]
    [key] = [f["key"] for f in files(pipeline_lake.settings, "md-raw-logs", raw["partition"])]
    assert raw["rows"] == len((lake / key).read_bytes().splitlines())


def test_bad_dataset_and_partition_names_are_refused(pipeline_lake: BuiltLake) -> None:
    s = pipeline_lake.settings
    for call in (lambda: partitions(s, "md-nope"), lambda: partitions(s, "../etc"),
                 lambda: files(s, "md-raw-logs", "../../etc"),
                 lambda: files(s, "md-raw-logs", "/etc"),
                 lambda: files(s, "md-raw-logs", "service=x/../../y"),
                 lambda: files(s, ".staging", "date=2026-11-01")):
        with pytest.raises(QueryError):
            call()
    assert files(s, "md-raw-logs", "service=nobody") == []


def test_a_jsonl_page_is_the_files_lines(pipeline_lake: BuiltLake) -> None:
    lake = pipeline_lake.lake
    key = data_files(lake / "md-raw-logs")[0].relative_to(lake).as_posix()
    lines = (lake / key).read_bytes().splitlines()
    page = preview(pipeline_lake.settings, key, offset=10, limit=7)
    assert page.rows == [orjson.loads(line) for line in lines[10:17]]
    assert (page.offset, page.limit, page.total, page.format) == (10, 7, None, "jsonl")
    assert set(page.columns) == {k for r in page.rows for k in r}
    tail = preview(pipeline_lake.settings, key, offset=len(lines) - 3, limit=50)
    assert len(tail.rows) == 3 and tail.total == len(lines)
    beyond = preview(pipeline_lake.settings, key, offset=len(lines) + 5, limit=5)
    assert beyond.rows == [] and beyond.total == len(lines)
    assert len(preview(pipeline_lake.settings, key, limit=MAX_LIMIT).rows) == min(
        MAX_LIMIT, len(lines))


def test_a_gzipped_jsonl_page(pipeline_lake: BuiltLake) -> None:
    lake = pipeline_lake.lake
    [path] = data_files(lake / "md-raw-errors")
    rows = [orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    page = preview(pipeline_lake.settings, path.relative_to(lake).as_posix(), offset=1, limit=5)
    assert page.rows == rows[1:] and page.total == len(rows) and page.format == "jsonl.gz"
    assert "error_code" in page.columns


def test_a_parquet_page_is_its_row_range(pipeline_lake: BuiltLake) -> None:
    lake = pipeline_lake.lake
    path = max(data_files(lake / "md-transformed-metrics"), key=lambda p: p.stat().st_size)
    want = duck(f"SELECT event_id FROM read_parquet('{path}', "
                      "hive_partitioning=false)")
    page = preview(pipeline_lake.settings, path.relative_to(lake).as_posix(), 1000, 25)
    assert [r["event_id"] for r in page.rows] == [w[0] for w in want[1000:1025]]
    assert page.total == len(want) and page.format == "parquet"
    assert "event_time" in page.columns
    assert page.rows[0]["event_time"].tzinfo is not None
    last = preview(pipeline_lake.settings, path.relative_to(lake).as_posix(), len(want) - 2)
    assert [r["event_id"] for r in last.rows] == [w[0] for w in want[-2:]]


@pytest.mark.parametrize("key", [
    "../state.db", "/etc/passwd", "md-raw-logs/../../state.db", "md-nope/x/part-1.jsonl",
    "md-raw-logs//part-1.jsonl", ".staging/x/part-1.parquet", "md-raw-logs/.tmp-1.jsonl",
    "md-raw-logs/service=auth/x.txt", "md-raw-logs", "", "md-raw-logs/a\\..\\b.jsonl",
    "md-raw-logs/" + "a" * 1100 + ".jsonl",
])
def test_hostile_keys_are_refused(pipeline_lake: BuiltLake, key: str) -> None:
    with pytest.raises(QueryError):
        preview(pipeline_lake.settings, key)


def test_page_bounds_are_checked(pipeline_lake: BuiltLake) -> None:
    lake = pipeline_lake.lake
    key = data_files(lake / "md-raw-logs")[0].relative_to(lake).as_posix()
    for offset, limit in ((0, MAX_LIMIT + 1), (0, 0), (-1, 10), (0, True), (2**40, 10)):
        with pytest.raises(QueryError, match=r"offset|limit"):
            preview(pipeline_lake.settings, key, offset, limit)
    with pytest.raises(QueryError, match="no file"):
        preview(pipeline_lake.settings, key.replace("part-", "part-0"))


def test_long_bad_and_cut_lines_do_not_break_a_page(tmp_path: Path,
                                                    pipeline_lake: BuiltLake) -> None:
    built = copy_lake(pipeline_lake, tmp_path / "copy")
    key = ("md-raw-logs/service=auth/year=2026/month=11/day=01/hour=05/part-" + "a" * 32
           + ".jsonl")
    path = built.lake / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"a": 1}\n' + b"x" * (3 * MAX_LINE_BYTES) + b"\nnot json\n[1]\n"
                     b'{"b": 2}')
    page = preview(built.settings, key)
    assert [page.rows[0], page.rows[-1]] == [{"a": 1}, {"b": 2}] and page.total == 5
    assert page.cut_lines == 1 and len(page.rows[1]["_line"]) == MAX_LINE_BYTES
    assert [r.get("_error") for r in page.rows[2:4]] == ["not JSON", "not a JSON object"]
    cut = built.lake / key.replace(".jsonl", ".jsonl.gz").replace("part-a", "part-b")
    cut.write_bytes(gzip.compress(b'{"a": 1}\n' * 5000)[:-40])
    page = preview(built.settings, cut.relative_to(built.lake).as_posix(), 4990, 20)
    assert page.total is None and page.notes and page.notes[0].startswith("file unreadable")


def test_a_missing_lake_is_one_error_and_creates_nothing(tmp_path: Path) -> None:
    settings = lake_settings(tmp_path / "typo")
    for call in (lambda: datasets(settings), lambda: partitions(settings, "md-raw-logs"),
                 lambda: files(settings, "md-raw-logs", "service=auth"),
                 lambda: preview(settings, "md-raw-logs/service=auth/part-1.jsonl")):
        with pytest.raises(ConfigError, match="no lake at"):
            call()
    assert not (tmp_path / "typo").exists()
