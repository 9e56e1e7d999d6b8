"""SQL over the lake: the views read what the pipeline wrote (checked against DuckDB reading
the files directly), filters on partition columns prune, and every way of writing, reading
outside the lake or running unbounded is refused with one line, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mad import lake
from mad.query.access import QueryError
from mad.query.sql import VIEWS, run_sql
from tests.query.conftest import BuiltLake, duck


def mad(built: BuiltLake, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mad.cli", "query", *args], text=True,
                          capture_output=True, timeout=300,
                          env={"MAD_DATA_DIR": str(built.root), "PATH": "/usr/bin:/bin"})


def test_the_views_read_the_lake(pipeline_lake: BuiltLake) -> None:
    s = pipeline_lake.settings
    got = run_sql(s, "SELECT service, count(*) FROM events_logs GROUP BY 1 ORDER BY 1")
    files = f"{pipeline_lake.lake}/{lake.transformed_dataset('log')}/*/*/*.parquet"
    assert got.rows == duck(f"SELECT service, count(*) FROM read_parquet('{files}') "
                            "GROUP BY 1 ORDER BY 1")
    assert {"events_logs", "events_metrics", "events_apm", "aggregates"} <= set(got.views)
    windows = run_sql(s, 'SELECT DISTINCT "window" FROM aggregates ORDER BY 1').rows
    assert [w for (w,) in windows] == ["1h", "1m", "5m"]
    hour = run_sql(s, "SELECT count(*) FROM events_metrics WHERE date = '2026-11-01' "
                      "AND hour = '01'").rows[0][0]
    one = f"{pipeline_lake.lake}/{lake.transformed_dataset('metric')}/date=2026-11-01/hour=01"
    assert hour == duck(f"SELECT count(*) FROM read_parquet('{one}/*.parquet')")[0][0] > 0


@pytest.mark.parametrize(("sql", "says"), [
    ("DELETE FROM events_logs", "read-only"),
    ("COPY (SELECT * FROM events_logs) TO '/tmp/out.csv'", "read-only"),
    ("CREATE TABLE x AS SELECT 1", "read-only"),
    ("ATTACH '/tmp/other.db'", "read-only"),
    ("SET threads = 1", "read-only"),
    ("INSTALL httpfs", "read-only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "views"),
    ("SELECT * FROM read_parquet('/etc/*.parquet')", "lake's views"),
    ("SELECT * FROM glob('/etc/*')", "views"),
    ("SELECT * FROM '/etc/passwd'", "does not exist"),
    ("SELECT * FROM main.events_logs", "only the lake's views"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("", "no SQL given"),
    ("SELEC 1", "cannot parse"),
])
def test_what_is_refused(pipeline_lake: BuiltLake, sql: str, says: str) -> None:
    with pytest.raises(QueryError, match=says):
        run_sql(pipeline_lake.settings, sql)


def test_a_statement_is_bounded(pipeline_lake: BuiltLake) -> None:
    s = pipeline_lake.settings
    with pytest.raises(QueryError, match="stopped"):
        run_sql(s, "SELECT count(*) FROM range(100000000000) a, range(1000000000) b",
                timeout_s=1)
    cut = run_sql(s, "SELECT * FROM events_logs", limit=5)
    assert len(cut.rows) == 5 and cut.truncated
    with pytest.raises(QueryError, match="limit"):
        run_sql(s, "SELECT 1", limit=0)


def test_the_cli_prints_and_writes_every_format(pipeline_lake: BuiltLake,
                                                tmp_path: Path) -> None:
    sql = "SELECT service, count(*) AS n FROM events_apm GROUP BY 1 ORDER BY 1"
    want = run_sql(pipeline_lake.settings, sql).rows
    table = mad(pipeline_lake, sql)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["service", "n"] and lines[-1] == f"({len(want)} rows)"
    as_json = json.loads(mad(pipeline_lake, sql, "--format", "json").stdout)
    assert [(r["service"], r["n"]) for r in as_json] == want
    as_csv = mad(pipeline_lake, sql, "--format", "csv").stdout.splitlines()
    assert as_csv[0] == "service,n" and as_csv[1:] == [f"{a},{b}" for a, b in want]
    out = tmp_path / "apm.parquet"
    done = mad(pipeline_lake, sql, "--format", "parquet", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert [tuple(r.values()) for r in pq.read_table(out).to_pylist()] == want
    views = mad(pipeline_lake, "--views")
    assert "events_logs: event_id VARCHAR" in views.stdout


def test_the_cli_refuses_with_one_line(pipeline_lake: BuiltLake) -> None:
    for args in (["DROP VIEW events_logs"], ["SELECT 1", "--format", "parquet"],
                 ["SELECT 1", "--format", "xml"],
                 ["SELECT 1", "--out", str(pipeline_lake.lake / "x.csv")]):
        done = mad(pipeline_lake, *args)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_engine_option(pipeline_lake: BuiltLake) -> None:
    from mad.etl.engines import ENGINES

    sql = "SELECT count(*) AS n FROM events_logs"
    embedded = [n for n in ENGINES.names() if not hasattr(ENGINES.entry(n).factory, "select")]
    same = mad(pipeline_lake, sql, "--engine", embedded[0], "--format", "json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout) == [{"n": run_sql(pipeline_lake.settings, sql).rows[0][0]}]
    bad = mad(pipeline_lake, sql, "--engine", "nope")
    assert bad.returncode != 0 and "--engine 'nope': one of" in bad.stderr


def test_every_view_names_a_dataset_of_the_lake_contract() -> None:
    assert set(VIEWS.values()) <= {*lake.TRANSFORMED_DATASETS.values(),
                                   lake.AGGREGATES_DATASET, lake.ANOMALIES_DATASET,
                                   lake.QUARANTINE_DATASET}


def test_the_same_statements_on_a_lake_in_s3(pipeline_lake: BuiltLake, aws: object,
                                             bucket_url: str) -> None:
    """The pipeline lake copied into a moto bucket: the views read it through httpfs with
    the lake's endpoint and credentials, with the same rows as on disk, and nothing outside
    the lake's prefix is reachable."""
    from mad.config import load_settings
    from mad.stores import open_store

    bucket = open_store(bucket_url, aws, create=True)  # type: ignore[arg-type]
    local = open_store(str(pipeline_lake.lake))
    for key in local.list(""):
        if key.endswith(".parquet"):
            bucket.put(key, local.get(key))
    outside = open_store(bucket_url.rsplit("/", 1)[0] + "/other", aws)  # type: ignore[arg-type]
    outside.put("secret.parquet", local.get(next(k for k in local.list("")
                                                 if k.endswith(".parquet"))))
    on_s3 = load_settings(env={}, overrides={
        "data_dir": str(pipeline_lake.root), "lake.url": bucket_url,
        "aws.endpoint_url": aws.endpoint_url,  # type: ignore[attr-defined]
        "aws.access_key_id": "testing", "aws.secret_access_key": "testing"})
    for sql in ("SELECT service, count(*) FROM events_logs GROUP BY 1 ORDER BY 1",
                'SELECT "window", count(*), sum(avg) FROM aggregates GROUP BY 1 ORDER BY 1',
                "SELECT count(*) FROM events_metrics WHERE date = '2026-11-01' AND hour = '01'"):
        assert run_sql(on_s3, sql).rows == run_sql(pipeline_lake.settings, sql).rows, sql
    assert run_sql(on_s3, "SELECT 1").views == run_sql(pipeline_lake.settings, "SELECT 1").views
    with pytest.raises(QueryError, match="only the lake's views"):
        run_sql(on_s3, f"SELECT * FROM read_parquet('{outside.url}secret.parquet')")
