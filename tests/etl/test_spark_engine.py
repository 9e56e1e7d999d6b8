"""The Spark engine against DuckDB: one hand-written plan, the same rows from both engines.

DuckDB runs the plan's SQL as written (its `raw_lines` built by the reference reader below,
which states the line rules); Spark runs it through `SparkEngine`. Outputs are read back
with pyarrow, so the Parquet layout (Hive folders, snappy, TIMESTAMP_MICROS) is checked too.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mad.etl.engines import ENGINES
from mad.etl.engines.spark.engine import SparkEngine
from mad.etl.engines.spark.paths import ingest_hour
from mad.etl.engines.spark.translate import to_spark_sql
from mad.etl.plan import Plan, Step
from tests.etl.conftest_spark import spark_fixture

pytestmark = pytest.mark.spark
spark = spark_fixture()

DUCKDB_SETUP = "SET TimeZone = 'UTC'"

# ---------------------------------------------------------------- the plan (DuckDB dialect)

PARSED = """
WITH j AS (
    SELECT source_file, line_no, ingest_hour,
           CASE WHEN json_valid(line) THEN line END AS doc
    FROM raw_lines
), f AS (
    SELECT source_file, line_no, ingest_hour, doc,
           json_extract_string(doc, '$.timestamp') AS ts_raw,
           TRY_CAST(json_extract_string(doc, '$.timestamp') AS DOUBLE) AS ts_num
    FROM j WHERE doc IS NOT NULL
)
SELECT
    json_extract_string(doc, '$.event_id') AS event_id,
    json_extract_string(doc, '$.service') AS service,
    upper(COALESCE(json_extract_string(doc, '$.level'), 'info')) AS level,
    json_extract_string(doc, '$.context.user.id') AS user_id,
    json_extract(doc, '$.context.geo') AS geo,
    TRY_CAST(json_extract_string(doc, '$.metrics.latency_ms') AS DOUBLE) AS latency_ms,
    COALESCE(json_extract_string(doc, '$.error.code'), 'none') AS error_code,
    regexp_extract(json_extract_string(doc, '$.context.request.path'), '^/api/([a-z]+)', 1)
        AS api,
    regexp_replace(json_extract_string(doc, '$.context.request.path'), '[0-9]+', ':id', 'g')
        AS route,
    regexp_matches(COALESCE(json_extract_string(doc, '$.error.message'), ''), 'TIMEOUT', 'i')
        AS is_timeout,
    length(json_extract_string(doc, '$.service')) AS service_len,
    concat_ws('/', json_extract_string(doc, '$.service'),
              json_extract_string(doc, '$.event_type')) AS series,
    CASE
        WHEN ts_num IS NOT NULL AND ts_num >= 100000000000 THEN epoch_ms(CAST(ts_num AS BIGINT))
        WHEN ts_num IS NOT NULL THEN to_timestamp(ts_num)
        ELSE TRY_CAST(ts_raw AS TIMESTAMPTZ)
    END AS event_time,
    TRY_CAST(ts_raw AS TIMESTAMP) AS wall_time,
    source_file, line_no, ingest_hour
FROM f
"""

EVENTS = """
SELECT *, strftime(event_time, '%Y-%m-%d') AS date, strftime(event_time, '%H') AS hour,
       epoch(event_time) AS epoch_s
FROM parsed WHERE event_time IS NOT NULL
"""

BAD = """
SELECT source_file, line_no, ingest_hour,
       CASE WHEN length(line) = 0 THEN 'blank' ELSE 'not json' END AS reason
FROM raw_lines WHERE NOT json_valid(line)
"""

AGG = """
SELECT service,
       time_bucket(INTERVAL '5 minutes', event_time) AS window_start,
       strftime(time_bucket(INTERVAL '5 minutes', event_time), '%Y-%m-%d') AS date,
       count(*) AS n,
       count(latency_ms) AS n_latency,
       avg(latency_ms) AS avg_ms,
       stddev(latency_ms) AS std_ms,
       min(latency_ms) AS min_ms,
       max(latency_ms) AS max_ms,
       quantile_cont(latency_ms, 0.5) AS p50,
       quantile_cont(latency_ms, 0.95) AS p95,
       quantile_cont(latency_ms, 0.99) AS p99,
       count(*) FILTER (WHERE error_code <> 'none') AS errors
FROM events
GROUP BY service, time_bucket(INTERVAL '5 minutes', event_time)
"""

ROLLING = """
SELECT event_id, service, event_time, latency_ms,
       avg(latency_ms) OVER (PARTITION BY service ORDER BY event_time, event_id
                             ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING) AS prev3_avg,
       count(*) OVER (PARTITION BY service ORDER BY event_time, event_id
                      ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING) AS prev3_n,
       lag(latency_ms) OVER (PARTITION BY service ORDER BY event_time, event_id) AS prev_ms,
       row_number() OVER (PARTITION BY service ORDER BY event_time DESC, event_id) AS recency,
       strftime(event_time, '%Y-%m-%d') AS date
FROM events
"""

PLAN = Plan(
    name="parity",
    steps=(
        Step("parsed", PARSED, cache=True),
        Step("events", EVENTS, cache=True, partition_by=("date", "hour")),
        Step("bad_lines", BAD),
        Step("count_bad", "SELECT * FROM bad_lines"),
        Step("aggregates", AGG, partition_by=("date",)),
        Step("rolling", ROLLING, partition_by=("date",)),
    ),
    outputs=("events", "bad_lines", "aggregates", "rolling"),
)


DEDUP = Plan(
    name="dedup",
    steps=(
        Step("schema_seen", "SELECT CAST(NULL AS VARCHAR) AS event_id, "
             "CAST(NULL AS VARCHAR) AS service, CAST(NULL AS VARCHAR) AS part WHERE 1 = 0"),
        Step("incoming", "SELECT json_extract_string(line, '$.event_id') AS event_id, "
             "json_extract_string(line, '$.service') AS service FROM raw_lines "
             "WHERE json_valid(line)"),
        Step("new_events", "SELECT i.event_id, i.service, 'x' AS part FROM incoming i "
             "ANTI JOIN seen s ON i.event_id = s.event_id AND s.part = 'x'",
             partition_by=("part",)),
    ),
    outputs=("new_events",),
    datasets=("seen",),
)


# ---------------------------------------------------------------- inputs

BASE = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)


def event(i: int, service: str, timestamp: object, **extra: Any) -> dict[str, Any]:
    """One nested event as services emit it."""
    doc: dict[str, Any] = {
        "event_id": f"{service}-{i:03d}", "service": service, "kind": "log",
        "event_type": "login" if i % 2 else "transfer", "timestamp": timestamp,
        "level": ["info", "WARN", None][i % 3],
        "context": {"user": {"id": f"u{i % 4}"}, "geo": {"country": "VN", "city": "HCM"},
                    "request": {"path": f"/api/{'pay' if i % 2 else 'auth'}/{1000 + i}"}},
        "metrics": {"latency_ms": round(10 + (i * 37 % 23) * 1.25, 2)},
    }
    if i % 5 == 0:
        doc["error"] = {"code": f"E{i}", "message": "upstream timeout" if i % 2 else "denied"}
    if i % 7 == 3:
        del doc["metrics"]
    doc.update(extra)
    return doc


def lines_for(service: str, offset: int) -> list[bytes]:
    """Events with every timestamp form: offsets, Z, naive, epoch s (int, float) and ms."""
    out = []
    for i in range(12):
        t = BASE.timestamp() + offset + i * 97.25
        forms: list[object] = [
            datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z"),
            datetime.fromtimestamp(t + 7 * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            + "+07:00",
            int(t), int(t * 1000), t,
            datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        ]
        out.append(json.dumps(event(i + offset, service, forms[i % len(forms)])).encode())
    return out


def raw_path(root: Path, kind: str, service: str, hour: int, gz: bool) -> Path:
    folder = (root / f"md-raw-{kind}" / f"service={service}" / "year=2026" / "month=11"
              / "day=01" / f"hour={hour:02d}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"part-{uuid.uuid4().hex}.jsonl{'.gz' if gz else ''}"


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three raw files: plain (with a truncated line, a non-UTF-8 byte, a blank line and a
    CRLF line), gzip, and plain without a final newline."""
    root = tmp_path_factory.mktemp("lake")
    plain = raw_path(root, "logs", "auth", 7, gz=False)
    body = lines_for("auth", 0)
    body.insert(3, b'{"event_id": "auth-trunc", "service": "au')  # truncated
    body.insert(5, b'{"event_id": "auth-\xff", "service": "auth", '
                   b'"timestamp": "2026-11-01T07:30:00Z"}')  # valid JSON once decoded
    body.insert(7, b"")
    body[8] = body[8] + b"\r"
    plain.write_bytes(b"\n".join(body) + b"\n")
    zipped = raw_path(root, "apm", "payments", 8, gz=True)
    zipped.write_bytes(gzip.compress(b"\n".join(lines_for("payments", 600)) + b"\n"))
    last = raw_path(root, "logs", "auth", 9, gz=False)
    last.write_bytes(b"\n".join(lines_for("auth", 3600)))  # no final newline
    return [str(plain), str(zipped), str(last)]


def reference_lines(files: list[str]) -> list[tuple[str, str, int, datetime | None]]:
    """The raw_lines rule both engines follow: split on \\n, drop one trailing \\r, drop the
    empty rest after a final newline, keep blank lines, invalid UTF-8 -> U+FFFD."""
    rows = []
    for f in files:
        data = Path(f).read_bytes()
        if f.endswith(".gz"):
            data = gzip.decompress(data)
        parts = data.split(b"\n")
        if parts and parts[-1] == b"":
            parts.pop()
        for no, raw in enumerate(parts, start=1):
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            rows.append((raw.decode("utf-8", "replace"), f, no, ingest_hour(f)))
    return rows


# ---------------------------------------------------------------- running both engines


def run_duckdb(plan: Plan, files: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The plan's SQL, as written, on DuckDB."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    con.execute(DUCKDB_SETUP)
    lines = reference_lines(files)
    table = pa.table({
        "line": [r[0] for r in lines], "source_file": [r[1] for r in lines],
        "line_no": pa.array([r[2] for r in lines], pa.int64()),
        "ingest_hour": pa.array([r[3] for r in lines], pa.timestamp("us")),
    })
    con.register("raw_lines_arrow", table)
    con.execute("CREATE VIEW raw_lines AS SELECT * FROM raw_lines_arrow")
    for step in plan.steps:
        kind = "TABLE" if step.cache else "VIEW"
        con.execute(f"CREATE {kind} {step.name} AS {step.sql}")
    return {name: rows_of(con.execute(f"SELECT * FROM {name}").to_arrow_table())
            for name in plan.outputs}


def read_output(path: Path, partition_by: tuple[str, ...]) -> list[dict[str, Any]]:
    """A written output read back with pyarrow, partition values as strings."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    part = ds.partitioning(pa.schema([(k, pa.string()) for k in partition_by]), flavor="hive")
    return rows_of(ds.dataset(path, format="parquet", partitioning=part).to_table())


def rows_of(table: Any) -> list[dict[str, Any]]:
    """Rows as dicts, timestamps as naive UTC, for comparing engines."""
    rows = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime) and value.tzinfo is not None:
                row[key] = value.astimezone(UTC).replace(tzinfo=None)
    return rows


def same_rows(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> None:
    """Equal as multisets: same columns, floats within 1e-9 relative."""
    assert len(left) == len(right)
    if not left:
        return
    assert set(left[0]) == set(right[0])
    cols = sorted(left[0])

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((v is None, round(v, 6) if isinstance(v, float) else str(v))
                     for v in (row[c] for c in cols))

    for a, b in zip(sorted(left, key=key), sorted(right, key=key), strict=True):
        for c in cols:
            x, y = a[c], b[c]
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (c, a, b)
            elif isinstance(x, float) or isinstance(y, float):
                assert x is not None and y is not None and math.isclose(x, y), (c, a, b)
            else:
                assert x == y, (c, a, b)


@pytest.fixture(scope="module")
def engine(spark: Any) -> SparkEngine:
    return SparkEngine(session=spark)


@pytest.fixture(scope="module")
def spark_run(engine: SparkEngine, raw_files: list[str],
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("out")
    return out, engine.execute(PLAN, raw_files, {}, str(out))


# ---------------------------------------------------------------- tests


def test_registered_by_name(spark: Any) -> None:
    engine = ENGINES.create("spark", session=spark)
    assert isinstance(engine, SparkEngine) and engine.name == "spark"
    engine.close()  # a given session is left running
    assert spark.range(1).count() == 1


def test_raw_lines_follow_the_line_rules(engine: SparkEngine, raw_files: list[str]) -> None:
    got = [(r.line, r.source_file, r.line_no, r.ingest_hour)
           for r in engine.raw_lines(raw_files).collect()]
    assert sorted(got) == sorted(reference_lines(raw_files))
    assert any("\ufffd" in line for line, *_ in got)
    assert ("", raw_files[0], 8, datetime(2026, 11, 1, 7)) in got  # the blank line
    assert {h for *_, h in got} == {datetime(2026, 11, 1, h) for h in (7, 8, 9)}


def test_line_numbers_hold_in_a_large_file(engine: SparkEngine, tmp_path: Path) -> None:
    path = raw_path(tmp_path, "metrics", "fraud", 3, gz=True)
    path.write_bytes(gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(1, 30001))))
    rows = engine.raw_lines([str(path)]).selectExpr(
        "count(*) AS n", "count_if(line <> concat('{\"n\": ', line_no, '}')) AS wrong").first()
    assert rows is not None and (rows.n, rows.wrong) == (30000, 0)


def test_every_output_matches_duckdb(spark_run: tuple[Path, dict[str, int]],
                                     raw_files: list[str]) -> None:
    out, counts = spark_run
    expected = run_duckdb(PLAN, raw_files)
    for name in PLAN.outputs:
        got = read_output(out / name, PLAN.step(name).partition_by)
        same_rows(got, expected[name])
        assert counts[name] == len(expected[name]), name
    assert counts["count_bad"] == len(expected["bad_lines"]) == 2  # truncated, blank
    events = {r["event_id"]: r for r in expected["events"]}
    assert len(events) == 37 and "auth-\ufffd" in events
    assert {r["reason"] for r in expected["bad_lines"]} == {"blank", "not json"}


def test_timestamp_forms_parse_to_utc(spark: Any) -> None:
    row = spark.sql(to_spark_sql(
        "SELECT TRY_CAST('2026-11-01T07:00:00.250+07:00' AS TIMESTAMPTZ) AS tz, "
        "TRY_CAST('2026-11-01T07:00:00.250+07:00' AS TIMESTAMP) AS wall, "
        "to_timestamp(1793516400.5) AS s, epoch_ms(1793516400250) AS ms, "
        "TRY_CAST('garbage' AS TIMESTAMPTZ) AS bad")).first()
    assert row.tz == datetime(2026, 11, 1, 0, 0, 0, 250000)
    assert row.wall == datetime(2026, 11, 1, 7, 0, 0, 250000)  # DuckDB TIMESTAMP drops it too
    assert row.s == datetime(2026, 11, 1, 7, 0, 0, 500000)
    assert row.ms == datetime(2026, 11, 1, 7, 0, 0, 250000)
    assert row.bad is None


def test_parquet_layout(spark_run: tuple[Path, dict[str, int]]) -> None:
    import pyarrow.parquet as pq

    out, _ = spark_run
    folders = sorted(p.relative_to(out / "events").parent.as_posix()
                     for p in (out / "events").rglob("*.parquet"))
    assert folders and all(f.startswith("date=2026-11-01/hour=") for f in folders)
    assert {f.split("hour=")[1] for f in folders} == {"07", "08"}
    files = list(out.rglob("*.parquet"))
    for f in files:
        meta = pq.ParquetFile(f).metadata
        schema = pq.ParquetFile(f).schema
        for i in range(meta.num_columns):
            assert meta.row_group(0).column(i).compression == "SNAPPY" if meta.num_rows else True
            column = schema.column(i)
            assert column.physical_type != "INT96"
            if "Timestamp" in str(column.logical_type):
                assert "microseconds" in str(column.logical_type)
    event_file = next((out / "events").rglob("*.parquet"))
    types = {c.name: str(c.logical_type) for c in pq.ParquetFile(event_file).schema}
    assert "isAdjustedToUTC=true" in types["event_time"]   # TIMESTAMPTZ -> instant
    assert "isAdjustedToUTC=false" in types["wall_time"]   # TIMESTAMP -> wall clock
    assert "date" not in types and "hour" not in types     # in the folder names only


def test_rerun_replaces_only_its_partitions(engine: SparkEngine, raw_files: list[str],
                                            tmp_path: Path) -> None:
    engine.execute(PLAN, raw_files, {}, str(tmp_path))
    before = read_output(tmp_path / "events", ("date", "hour"))
    counts = engine.execute(PLAN, raw_files[2:], {}, str(tmp_path))  # events of hour 08 only
    after = read_output(tmp_path / "events", ("date", "hour"))
    same_rows(after, before)
    assert counts["events"] == sum(1 for r in before if r["hour"] == "08") == 12
    engine.execute(PLAN, raw_files, {}, str(tmp_path))
    same_rows(read_output(tmp_path / "events", ("date", "hour")), before)


def test_datasets_bind_files_or_the_schema_step(engine: SparkEngine, raw_files: list[str],
                                                       tmp_path: Path) -> None:
    first = engine.execute(DEDUP, raw_files[:1], {"seen": []}, str(tmp_path / "a"))
    assert first["new_events"] == 13
    seen = [str(p) for p in (tmp_path / "a" / "new_events").rglob("*.parquet")]
    again = engine.execute(DEDUP, raw_files[:1], {"seen": seen}, str(tmp_path / "b"))
    assert again["new_events"] == 0
    with pytest.raises(Exception, match="schema_seen"):
        engine.execute(Plan("p", DEDUP.steps[1:], DEDUP.outputs, ("seen",)), raw_files[:1],
                       {"seen": []}, str(tmp_path / "c"))


def test_dialect_functions_agree_with_duckdb(spark: Any) -> None:
    import duckdb

    sql = (
        "SELECT dayofweek(TIMESTAMP '2026-11-01 07:00:00') AS dow, "
        "isodow(TIMESTAMP '2026-11-01 07:00:00') AS iso, "
        "CAST(time_bucket(INTERVAL '1 week', TIMESTAMP '2026-11-05 07:00:00') AS VARCHAR) AS wk, "
        "string_split('a,b,c', ',')[2] AS second, string_split('a', ',')[5] AS missing, "
        "regexp_replace('  x  ', '^\\s+', '') AS ltrimmed, "
        "regexp_replace('a1b22', '([a-z])([0-9]+)', '\\2\\1', 'g') AS swapped, "
        "regexp_extract('id=42;', 'id=([0-9]+)', 1) AS grp, "
        "regexp_extract('id=42;', '[0-9]+') AS whole, "
        "date_part('second', TIMESTAMP '2026-11-01 07:00:09.5') AS sec, "
        "epoch(TIMESTAMPTZ '2026-11-01 07:00:00.5+00') AS ep, "
        "quantile_disc(x, 0.5) AS qd, median(x) AS med, "
        "concat('a', NULL, 'b') AS cat, split_part('a-b-c', '-', 2) AS part, "
        "strftime(TIMESTAMP '2026-11-01 07:05:09', '%Y-%m-%dT%H:%M:%SZ') AS iso_text, "
        "CAST(try_strptime('2026-11-01 07:05:09', '%Y-%m-%d %H:%M:%S') AS VARCHAR) AS parsed "
        "FROM (SELECT unnest([1, 2, 3, 4]) AS x)"
    )
    con = duckdb.connect()
    con.execute(DUCKDB_SETUP)
    want = con.execute(sql).to_arrow_table().to_pylist()[0]
    got = spark.sql(to_spark_sql(sql.replace("unnest([1, 2, 3, 4])", "explode(array(1,2,3,4))")
                                 )).first().asDict()
    got["qd"], got["sec"] = int(got["qd"]), int(got["sec"])
    want["wk"], got["wk"] = want["wk"][:19], str(got["wk"])[:19]
    want["parsed"], got["parsed"] = want["parsed"][:19], str(got["parsed"])[:19]
    assert got == want
