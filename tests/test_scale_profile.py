"""The whole pipeline on the embedded profile and on the scale profile gives the same answers.

One generated input (two hours with its faults and incidents: duplicates, late and malformed
lines) goes through:

* embedded: `mad ingest serve` (embedded stream, local lake) -> `mad etl run` (DuckDB) ->
  `mad detect run --once`, state in SQLite;
* scale (`MAD_PROFILE=scale`): two `mad ingest serve` processes on one 4-shard Kinesis stream
  (moto), their raw writers sharing the shards by lease, an S3 lake (moto) -> `mad etl run` on a
  Spark standalone cluster of two workers reading and writing `s3a://` -> two
  `mad detect run --watch` workers sharing 4 detection shards, state in PostgreSQL ->
  `mad store sync` into Redis.

Then: the same transformed rows, quarantine and rejected records, the same aggregates
(floats within 1e-9 relative: engines sum in a different order), the same anomalies and
incidents, and Redis holding what the lake holds.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from mad import lake
from mad.config import AwsSettings, Settings, load_settings
from mad.generate.backfill import run_backfill
from mad.query.detection import anomaly_keys, read_anomalies
from mad.stores import open_store
from tests.conftest import free_port
from tests.detect.test_pipeline import incidents
from tests.etl.helpers import float_blind, same
from tests.ingest.test_end_to_end import post_all, start
from tests.pg_server import postgres_fixture
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.spark]

pg = postgres_fixture()
ROOT = Path(__file__).resolve().parents[1]
JARS = [str(ROOT / ".venv" / "spark-jars" / "hadoop-aws-3.3.1.jar"),
        str(ROOT / ".venv" / "spark-jars" / "aws-java-sdk-bundle-1.11.901.jar")]
SHARDS = 4
DATASETS = {
    **{lake.transformed_dataset(k): "event_id, event_time, service, date, hour"
       for k in lake.KINDS},
    lake.QUARANTINE_DATASET: "reason, line, line_no, date, hour",
    lake.AGGREGATES_DATASET: ('"window", window_start, service, series, "count", avg, min, '
                              "max, stddev, p50, p95, p99, outlier_score, outlier"),
}


def mad(env: dict[str, str], *args: str, timeout: float = 900) -> str:
    out = subprocess.run([sys.executable, "-m", "mad.cli", *args], env=env, timeout=timeout,
                         capture_output=True, text=True)
    assert out.returncode == 0, f"mad {' '.join(args)}: {out.stdout[-2000:]}{out.stderr[-3000:]}"
    return out.stdout


def serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`mad ingest serve`, once its API answers."""
    return start(["ingest", "serve"], env, int(env["MAD_INGEST__PORT"]))


def stop(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc is None:
            continue
        try:
            proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """Two hours ending an hour ago (inside the hot store's horizon), faults included."""
    out = tmp_path_factory.mktemp("scale_input")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    settings = load_settings(env={}, overrides={
        "generate.duration": "2h", "generate.rate": 8, "generate.seed": 20261204,
        "generate.start": (hour - timedelta(hours=3)).isoformat(),
        "generate.faults.malformed": 0.01})
    run_backfill(settings.generate, out, progress=False)
    return (out / "events.jsonl").read_bytes().splitlines(keepends=True)


def base_env(data: Path, state_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    env.update({"MAD_DATA_DIR": str(data), "MAD_STATE__URL": state_url,
                "MAD_WRITER__FLUSH_INTERVAL_S": "1", "MAD_ETL__WINDOWS": '["1m"]',
                "MAD_DETECT__DETECTOR__ENSEMBLE__WARMUP": "30",
                "MAD_DETECT__WATCH_INTERVAL_S": "1", "PYTHONUNBUFFERED": "1",
                "PYSPARK_PYTHON": sys.executable})
    return env


def writers_of(env: dict[str, str], tmp_path: Path, want: int) -> set[str]:
    """The raw writers (host:pid) holding the stream's shards, waiting a bounded time for
    `want` of them, as `mad ingest status` shows them."""
    status = ""
    for _ in range(60):
        status = mad({**env, "MAD_DATA_DIR": str(tmp_path / "scale-ingest-0")}, "ingest",
                     "status")
        found = set(re.findall(r"\s(\S+:\d+)\s+\d\d:\d\d:\d\d\n", status))
        if len(found) >= want:
            return found
        time.sleep(1)
    raise AssertionError(f"not {want} writers on the stream:\n{status}")


def post_in_turn(ports: list[int], lines: list[bytes], chunk: int = 2000) -> int:
    """Send consecutive chunks to each API in turn; returns the accepted count."""
    accepted = 0
    for i in range(0, len(lines), chunk):
        got, _, _ = post_all(ports[(i // chunk) % len(ports)], lines[i : i + chunk])
        accepted += len(got)
    return accepted


def lake_rows(url: str, aws: AwsSettings | None, dataset: str,
              columns: str) -> list[tuple[Any, ...]]:
    store = open_store(url, aws)
    keys = [k for k in store.list(dataset + "/") if k.endswith(".parquet")]
    if not keys:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, key in enumerate(keys):  # keep the key=value folders for hive partitioning
            path = Path(tmp) / key.rsplit("/", 1)[0] / f"{i}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(store.get(key))
            files.append(str(path))
        con = duckdb.connect()
        try:
            listing = ", ".join(f"'{f}'" for f in files)
            rows = con.sql(f"SELECT {columns} FROM read_parquet([{listing}], hive_partitioning"
                           " = true, hive_types_autocast = false)").fetchall()
        finally:
            con.close()
    return sorted(rows, key=float_blind)


def rejected(url: str, aws: AwsSettings | None) -> dict[str, int]:
    """The records of md-raw-errors by reason."""
    store = open_store(url, aws)
    reasons: dict[str, int] = {}
    for key in store.list(lake.ERRORS_DATASET + "/"):
        for line in gzip.decompress(store.get(key)).splitlines():
            envelope = orjson.loads(line)
            code = str(envelope["error_code"])
            reasons[code] = reasons.get(code, 0) + int(envelope.get("records") or 1)
    return reasons


def anomalies(url: str, aws: AwsSettings | None) -> list[tuple[Any, ...]]:
    store = open_store(url, aws)
    found = read_anomalies(store, anomaly_keys(store, "1m"))
    return sorted(((a.window_start, a.service, a.series, a.stat, a.severity, a.detectors,
                    a.score, a.observed, a.expected) for a in found), key=float_blind)


def differences(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> list[Any]:
    """The first few rows that differ, side by side (for a failure's message)."""
    return [(g, w) for g, w in zip(got, want, strict=False) if not close(g, w)][:5]


def close(a: Any, b: Any) -> bool:
    """Equal, floats within 1e-9 relative, through lists and dicts."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9,
                                                                  abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(1800)
def test_embedded_and_scale_profiles_give_the_same_lake_and_detection(
    tmp_path: Path, sent: list[bytes], moto_url: str, bucket_url: str, pg: Any,
    redis: RedisServer,
) -> None:
    if not all(Path(j).is_file() for j in JARS):
        pytest.fail("the S3A jars are missing: `make spark-jars` (make test runs it)")
    from mad.etl.engines.spark.cluster import LocalCluster

    # -- embedded ------------------------------------------------------------------------
    embedded = base_env(tmp_path / "embedded", f"sqlite:///{tmp_path / 'embedded.db'}")
    port = free_port()
    api = serve({**embedded, "MAD_INGEST__PORT": str(port)})
    try:
        accepted = post_in_turn([port], sent)
    finally:
        stop(api)
    mad(embedded, "etl", "run")
    mad(embedded, "detect", "run", "--once")
    settings: Settings = load_settings(env=embedded)
    local_lake = settings.lake_url

    # -- scale ---------------------------------------------------------------------------
    aws = AwsSettings(endpoint_url=moto_url, region="us-east-1", access_key_id="testing",
                      secret_access_key="testing")
    state_url = pg.create_database(f"scale_{uuid.uuid4().hex[:10]}")
    with LocalCluster(workers=2, cores=1, memory="1g") as cluster:
        scale = {**base_env(tmp_path / "scale", state_url), "MAD_PROFILE": "scale",
                 "MAD_LAKE__URL": bucket_url,
                 "MAD_INGEST__STREAM__KINESIS__STREAM_NAME": f"e2e-{uuid.uuid4().hex[:8]}",
                 "MAD_INGEST__STREAM__KINESIS__SHARDS": str(SHARDS),
                 "MAD_AWS__ENDPOINT_URL": moto_url, "MAD_AWS__ACCESS_KEY_ID": "testing",
                 "MAD_AWS__SECRET_ACCESS_KEY": "testing",
                 "MAD_ETL__ENGINE__SPARK__MASTER": cluster.master_url,
                 "MAD_ETL__ENGINE__SPARK__JARS": orjson.dumps(JARS).decode(),
                 "MAD_STORE__HOT__REDIS__URL": redis.url,
                 "MAD_DETECT__SHARDS": str(SHARDS), "MAD_WRITER__LEASE_S": "3"}
        ports = [free_port(), free_port()]
        apis: list[subprocess.Popen[bytes] | None] = [None, None]
        try:  # each ingest process has its own data folder (its writer's lock and health)
            for i, p in enumerate(ports):
                apis[i] = serve({**scale, "MAD_INGEST__PORT": str(p),
                                 "MAD_DATA_DIR": str(tmp_path / f"scale-ingest-{i}")})
            writers_of(scale, tmp_path, want=2)  # both writers hold shards, then post
            assert post_in_turn(ports, sent) == accepted
            assert len(writers_of(scale, tmp_path, want=2)) == 2
        finally:
            stop(*apis)
        mad(scale, "etl", "run")
    workers = [subprocess.Popen([sys.executable, "-m", "mad.cli", "detect", "run", "--watch"],
                                env=scale, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for _ in range(2)]
    try:
        want = mad(embedded, "detect", "status", "--format", "json")
        end = orjson.loads(want)["scored_to"]
        assert end is not None
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:  # every shard and the incident step at one end
            now = orjson.loads(mad(scale, "detect", "status", "--format", "json"))
            rows = now["shards"]
            ends = {r["complete_to"] for r in rows}
            if now["scored_to"] == end and len(ends) == 1 and None not in ends:
                break
            assert all(w.poll() is None for w in workers), "a detection worker stopped"
            time.sleep(2)
        else:
            raise AssertionError(f"the detection workers did not finish at {end}: "
                                 f"{now['scored_to']}, {rows}")
        holders = {r["holder"] for r in rows if r["shard"] != "incidents"}
        assert len(holders) == 2, rows  # both workers scored shards
    finally:
        stop(*workers)
    assert all(w.returncode == 0 for w in workers)
    mad(scale, "store", "sync")

    # -- the same answers ----------------------------------------------------------------
    for dataset, columns in DATASETS.items():
        mine, theirs = lake_rows(local_lake, None, dataset, columns), lake_rows(
            bucket_url, aws, dataset, columns)
        assert len(mine) == len(theirs) and same(theirs, mine), (dataset, differences(
            theirs, mine))
        assert mine or dataset == lake.QUARANTINE_DATASET, f"nothing in {dataset}"
    assert rejected(bucket_url, aws) == rejected(local_lake, None) != {}
    got, wanted = anomalies(bucket_url, aws), anomalies(local_lake, None)
    assert wanted and close(got, wanted)
    got_incidents, want_incidents = incidents(load_settings(env=scale)), incidents(settings)
    assert want_incidents and close(got_incidents, want_incidents)
    status = orjson.loads(mad(scale, "store", "status", "--format", "json"))
    shown = orjson.dumps(status).decode()
    assert status["backend"] == "redis" and status["up"], shown
    held_sets = {(h["dataset"], h["window"]) for h in status["held"] if h["hours"]}
    assert {("aggregates", "1m"), ("anomalies", "1m")} <= held_sets, shown
