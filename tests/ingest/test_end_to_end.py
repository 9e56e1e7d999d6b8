"""Simulator -> ingest API -> stream -> raw writer -> raw lake, with real processes.

Two backend sets: embedded stream + local lake, and Kinesis + S3 on the moto server. Every
accepted event_id must be in the raw lake, every rejected record in md-raw-errors with its
reason, and accepted + rejected = sent.
"""

from __future__ import annotations

import base64
import gzip
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import free_port

from mad import lake
from mad.config import AwsSettings, load_settings
from mad.generate.backfill import run_backfill
from mad.stores import open_store

BATCH = 500


@pytest.fixture(scope="module")
def sent_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = tmp_path_factory.mktemp("e2e_backfill")
    settings = load_settings(env={}, overrides={
        "generate.duration": "15m", "generate.rate": 30, "generate.seed": 21,
        "generate.start": "2026-11-03T10:00:00Z", "generate.faults.malformed": 0.01,
    })
    run_backfill(settings.generate, out, progress=False)
    return (out / "events.jsonl").read_bytes().splitlines(keepends=True)


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "mad.cli", *args],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for _ in range(600):  # up to a minute on a loaded machine
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read().decode() if proc.stdout else "exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("ingest API did not start")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-2000:]
    return out.decode()


def post_all(port: int, lines: list[bytes]) -> tuple[set[str], list[dict[str, Any]], int]:
    """NDJSON batches of 500; retries 429/503 a bounded number of times."""
    accepted: set[str] = set()
    rejected: list[dict[str, Any]] = []
    requests = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for i in range(0, len(lines), BATCH):
            body = gzip.compress(b"".join(lines[i : i + BATCH]))
            for _attempt in range(50):
                resp = client.post("/v1/events", content=body, headers={
                    "content-type": "application/x-ndjson", "content-encoding": "gzip"})
                requests += 1
                if resp.status_code not in (429, 503):
                    break
                time.sleep(float(resp.headers.get("retry-after", "1")))
            assert resp.status_code == 200, resp.text
            for rec in resp.json()["records"]:
                if rec["status"] == "accepted":
                    accepted.add(rec["event_id"])
                else:
                    rejected.append(rec)
    return accepted, rejected, requests


def read_lake(url: str, aws: AwsSettings | None) -> tuple[list[tuple[str, dict[str, Any]]],
                                                         list[dict[str, Any]]]:
    store = open_store(url, aws)
    events: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    for key in store.list(""):
        assert key.rsplit("/", 1)[-1].startswith("part-"), key
        lines = gzip.decompress(store.get(key)).splitlines()
        target = errors if key.startswith("md-raw-errors/") else None
        for line in lines:
            record = orjson.loads(line)
            if target is not None:
                target.append(record)
            else:
                events.append((key, record))
    return events, errors


def check_lake(url: str, aws: AwsSettings | None, sent: list[bytes], accepted: set[str],
               rejected: list[dict[str, Any]]) -> None:
    assert len(accepted) + len(rejected) >= len(sent) - _duplicates(sent, accepted)
    events, errors = read_lake(url, aws)
    in_lake = {e["event_id"] for _, e in events}
    assert accepted <= in_lake
    assert len(events) + len(errors) == len(sent)
    for key, event in events:
        part = lake.parse_key(key)
        assert part.kind == event["kind"]
        assert part.service == (event.get("service") or part.service)
    reasons = sorted(e["error_code"] for e in errors)
    assert reasons == sorted(r["error_code"] for r in rejected)
    for err in errors:
        assert base64.b64decode(err["raw_data"]) in {line.rstrip(b"\n") for line in sent}


def _duplicates(sent: list[bytes], accepted: set[str]) -> int:
    """Re-sent lines are accepted again under the same event_id: count them once."""
    ids = [orjson.loads(line)["event_id"] for line in sent if _is_event(line)]
    return len(ids) - len(set(ids))


def _is_event(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line).get("event_id"), str)
    except (orjson.JSONDecodeError, AttributeError):
        return False


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    yield {"MAD_DATA_DIR": str(tmp_path / "data"), "MAD_INGEST__PORT": str(port),
           "MAD_WRITER__FLUSH_INTERVAL_S": "1", "PORT": str(port)}


def test_embedded_stream_to_local_lake(env: dict[str, str], tmp_path: Path,
                                       sent_lines: list[bytes]) -> None:
    port = int(env["PORT"])
    lake_dir = tmp_path / "lake"
    proc = start(["ingest", "serve", "--lake", str(lake_dir)], env, port)
    try:
        accepted, rejected, _ = post_all(port, sent_lines)
    finally:
        stop(proc)
    assert rejected, "the backfill holds malformed records"
    check_lake(str(lake_dir), None, sent_lines, accepted, rejected)
    status = subprocess.run([sys.executable, "-m", "mad.cli", "ingest", "status"],
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert "md-raw-logs" in status.stdout and "md-raw-errors" in status.stdout


def test_kinesis_stream_to_s3_lake(env: dict[str, str], moto_url: str, bucket_url: str,
                                   sent_lines: list[bytes]) -> None:
    port = int(env["PORT"])
    aws = AwsSettings(endpoint_url=moto_url, region="us-east-1", access_key_id="testing",
                      secret_access_key="testing")
    kinesis = {
        "MAD_INGEST__STREAM__BACKEND": "kinesis",
        "MAD_INGEST__STREAM__KINESIS_STREAM": f"e2e-{uuid.uuid4().hex[:8]}",
        "MAD_INGEST__STREAM__KINESIS_SHARDS": "2",
        "MAD_AWS__ENDPOINT_URL": moto_url, "MAD_AWS__ACCESS_KEY_ID": "testing",
        "MAD_AWS__SECRET_ACCESS_KEY": "testing", "MAD_LAKE__URL": bucket_url,
    }
    lines = sent_lines[: len(sent_lines) // 3]
    proc = start(["ingest", "serve"], {**env, **kinesis}, port)
    try:
        accepted, rejected, _ = post_all(port, lines)
    finally:
        stop(proc)
    check_lake(bucket_url, aws, lines, accepted, rejected)


def test_mad_up_wires_simulator_to_lake(env: dict[str, str]) -> None:
    port = int(env["PORT"])
    sim_port = free_port()
    data = Path(env["MAD_DATA_DIR"])
    proc = start(["up", "--rate", "150", "--no-dashboard", "--backfill-hours", "0"],
                 {**env, "MAD_SIMULATE__PORT": str(sim_port),
                  "MAD_SUPERVISOR__STATUS_PORT": str(free_port())}, port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:  # the simulator starts after the ingest API has answered
            status = httpx.get(f"http://127.0.0.1:{sim_port}/api/status").json()
        except httpx.ConnectError:
            status = {}
        if status.get("lines_sent", 0) > 300:
            break
        time.sleep(0.2)
    out = stop(proc, signal.SIGINT)
    assert "stopped" in out
    labels = orjson.loads((data / "simulator" / "labels.json").read_bytes())
    events, errors = read_lake(str(data / "lake"), None)
    assert labels["lines"] == len(events) + len(errors) > 300
