"""Profiles and `mad doctor`: the scale profile selects every distributed backend, mad.yaml
sets its endpoints, and the doctor says in one line per backend what is reachable and what
is not, against real servers (moto for S3 and Kinesis, PostgreSQL, Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from mad.config import load_settings
from mad.errors import ConfigError
from tests.conftest import free_port
from tests.pg_server import postgres_fixture
from tests.redis_server import RedisServer, redis_fixture

pg = postgres_fixture()
redis_server = redis_fixture()
MAD = [sys.executable, "-m", "mad.cli"]


def mad(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAD_", "AWS_"))}
    return subprocess.run([*MAD, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**clean, **(env or {})})


def write_yaml(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# -- profiles --------------------------------------------------------------------------------

def test_scale_profile_selects_every_distributed_backend(tmp_path: Path) -> None:
    s = load_settings(config_file=write_yaml(tmp_path / "mad.yaml", {}),
                      env={"MAD_PROFILE": "scale"})
    assert s.profile == "scale"
    assert s.ingest.stream.backend == "kinesis"
    assert s.lake_url.startswith("s3://")
    assert s.etl.engine.backend == "spark"
    assert str(s.etl.engine.options().master).startswith("spark://")  # type: ignore[attr-defined]
    assert s.state_url.startswith("postgresql")
    assert s.store.hot.backend == "redis"


def test_profile_layers_sit_between_the_file_and_the_environment(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "mad.yaml", {
        "profile": "scale",
        "lake": {"url": str(tmp_path / "lake")},  # the file's own value: the profile wins
        "detect": {"window": "5m"},                # not in the profile: the file's stands
        "profiles": {"scale": {"lake": {"url": "s3://ours/lake"},
                               "state": {"url": "postgresql+psycopg://u@db:5432/mad"}}},
    })
    s = load_settings(config_file=config, env={})
    assert (s.lake_url, s.state_url, s.detect.window) == (
        "s3://ours/lake", "postgresql+psycopg://u@db:5432/mad", "5m")
    s = load_settings(config_file=config, env={"MAD_LAKE__URL": "s3://env/lake"})
    assert s.lake_url == "s3://env/lake"
    s = load_settings(config_file=config, env={"MAD_PROFILE": "embedded"})
    assert s.profile == "embedded" and s.lake_url == str(tmp_path / "lake")
    assert s.ingest.stream.backend == "embedded"


def test_a_profile_of_your_own(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "mad.yaml", {
        "profiles": {"staging": {"etl": {"engine": "spark"}}}})
    s = load_settings(config_file=config, overrides={"profile": "staging"}, env={})
    assert s.etl.engine.backend == "spark" and s.ingest.stream.backend == "embedded"


@pytest.mark.parametrize(("data", "env", "needle"), [
    ({}, {"MAD_PROFILE": "huge"}, "unknown profile 'huge' (known: embedded, scale"),
    ({"profiles": ["scale"]}, {}, "'profiles' must map each profile name"),
    ({"profiles": {"scale": {"lake": {"nope": 1}}}}, {"MAD_PROFILE": "scale"}, "lake.nope"),
])
def test_bad_profiles_are_one_clear_error(tmp_path: Path, data: dict[str, object],
                                          env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=write_yaml(tmp_path / "mad.yaml", data), env=env)
    assert needle in str(err.value)


# -- doctor ----------------------------------------------------------------------------------

def lines(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The doctor's table as {part: line}."""
    out = {}
    for line in proc.stdout.splitlines()[1:]:
        status, part, _rest = line.split(maxsplit=2)
        out[part] = line
        assert status in ("ok", "note", "FAIL"), line
    return out


def test_doctor_embedded_is_all_ok_and_creates_nothing(tmp_path: Path) -> None:
    proc = mad("doctor", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = lines(proc)
    assert set(found) == {"state", "stream", "lake", "engine", "hot"}
    assert all(line.startswith(("ok", "note")) for line in found.values())
    assert found["engine"].startswith("ok") and found["hot"].startswith("ok")
    assert list(tmp_path.iterdir()) == []


def test_doctor_on_the_scale_profile_names_each_missing_piece(
        tmp_path: Path, moto_url: str, pg: object, redis_server: RedisServer) -> None:
    bucket, stream = f"doc-{uuid.uuid4().hex[:10]}", f"doc-{uuid.uuid4().hex[:10]}"
    state = pg.create_database(f"doc_{uuid.uuid4().hex[:8]}")  # type: ignore[attr-defined]
    closed = free_port()  # nothing listens here: the Spark master is down
    config = write_yaml(tmp_path / "mad.yaml", {
        "profile": "scale",
        "aws": {"endpoint_url": moto_url, "region": "us-east-1",
                "access_key_id": "testing", "secret_access_key": "testing"},
        "profiles": {"scale": {
            "lake": {"url": f"s3://{bucket}/lake"},
            "ingest": {"stream": {"backend": "kinesis",
                                  "kinesis": {"stream_name": stream, "shards": 2}}},
            "etl": {"engine": {"backend": "spark",
                               "spark": {"master": f"spark://127.0.0.1:{closed}"}}},
            "state": {"url": str(state)},
            "store": {"hot": {"backend": "redis", "redis": {"url": redis_server.url}}},
        }},
    })
    proc = mad("doctor", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    found = lines(proc)
    assert found["stream"].startswith("note") and "creates it with 2 shards" in found["stream"]
    assert found["lake"].startswith("note") and "bucket not created yet" in found["lake"]
    assert found["engine"].startswith("FAIL")
    assert f"master 127.0.0.1:{closed} does not accept connections" in found["engine"]
    assert "hadoop-aws" in found["engine"]
    assert found["state"].startswith("note") and "tables not created yet" in found["state"]
    assert found["hot"].startswith("ok") and "answers" in found["hot"]

    # set up what was missing: the bucket, the stream (2 shards) and the schema
    aws = {"endpoint_url": moto_url, "region_name": "us-east-1",
           "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", **aws).create_bucket(Bucket=bucket)
    kinesis = boto3.client("kinesis", **aws)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream,
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    from mad.state import open_state

    open_state(str(state)).dispose()
    proc = mad("doctor", "--config", str(config), "--format", "json", cwd=tmp_path)
    report = json.loads(proc.stdout)
    by_part = {c["part"]: c for c in report["checks"]}
    assert report["profile"] == "scale" and report["ok"] is False and proc.returncode == 1
    assert by_part["stream"]["status"] == "ok"
    assert "ACTIVE, 2 open shard(s)" in by_part["stream"]["detail"]
    assert by_part["lake"]["status"] == "ok" and "bucket exists" in by_part["lake"]["detail"]
    assert by_part["state"]["status"] == "ok" and "tables present" in by_part["state"]["detail"]
    assert by_part["engine"]["status"] == "FAIL"  # the master is still down
    assert "testing" not in proc.stdout  # no credential is printed


def test_doctor_says_when_a_server_is_down(tmp_path: Path) -> None:
    port = free_port()
    env = {"MAD_STATE__URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/mad",
           "MAD_STORE__HOT__BACKEND": "redis",
           "MAD_STORE__HOT__REDIS__URL": f"redis://127.0.0.1:{port}/0"}
    proc = mad("doctor", cwd=tmp_path, env=env)
    found = lines(proc)
    assert proc.returncode == 1
    assert found["state"].startswith("FAIL") and "cannot connect" in found["state"]
    assert found["hot"].startswith("FAIL")
    assert found["stream"].startswith("ok") and found["lake"].startswith("note")
