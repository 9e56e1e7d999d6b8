"""Shared fixtures: free loopback ports, a real moto server (S3 and Kinesis emulator) for the
session, and one generated 6-hour backfill.

PySpark starts one JVM per test process and keeps it for every later session, and only the
jars named when that JVM starts are on the driver's class path. So when `make spark-jars`
has fetched the S3A jars, every test session's JVM starts with them (PYSPARK_SUBMIT_ARGS),
whichever module starts Spark first: an `s3a://` test then works after any other Spark test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mad.config import AwsSettings
from tests.reconciled import SUITES as RECONCILED_SUITES
from tests.reconciled import failures as reconciled_failures

S3A_JARS = [Path(__file__).resolve().parents[1] / ".venv" / "spark-jars" / name
            for name in ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")]
if all(j.is_file() for j in S3A_JARS) and "PYSPARK_SUBMIT_ARGS" not in os.environ:
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--jars {','.join(map(str, S3A_JARS))} pyspark-shell"


@pytest.fixture(autouse=True)
def _reconciled(request: pytest.FixtureRequest) -> Iterator[None]:
    """Reconciliation holds after every test of the suites that move data
    (`tests/reconciled.py`), unless the test is marked `loses_data`."""
    path = Path(str(request.node.fspath))
    checked = (path.parent.name in RECONCILED_SUITES and "tmp_path" in request.fixturenames
               and not request.node.get_closest_marker("loses_data"))
    root = request.getfixturevalue("tmp_path") if checked else None
    yield
    if root is not None:
        lost = reconciled_failures(root)
        assert not lost, "reconciliation failed:\n" + "\n".join(lost[:10])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports (all held open while choosing, so none is handed out twice)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def six_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mad generate` over 6 simulated hours at the default rate (seed 7), faults included."""
    from mad.config import load_settings
    from mad.generate.backfill import run_backfill

    out = tmp_path_factory.mktemp("six_hours")
    settings = load_settings(env={}, overrides={"generate.duration": "6h"})
    run_backfill(settings.generate, out, progress=False)
    return out


def start_moto(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `python -m moto.server` on a free port; return it once it answers HTTP."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (log_dir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited: {(log_dir / 'moto.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return proc, url
        except urllib.error.HTTPError:  # any HTTP answer means it is up
            return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not answer within 60 s")


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a moto server that lives for the test session."""
    proc, url = start_moto(tmp_path_factory.mktemp("moto"))
    yield url
    stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def aws(moto_url: str) -> AwsSettings:
    """Settings pointing at the moto server with dummy credentials (not the real env)."""
    return AwsSettings(endpoint_url=moto_url, region="us-east-1",
                       access_key_id="testing", secret_access_key="testing")


@pytest.fixture
def bucket_url() -> str:
    """A fresh bucket name per test, as an s3:// lake URL with a prefix."""
    return f"s3://mad-test-{uuid.uuid4().hex[:12]}/lake"


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state database of each kind; the module (or its conftest) provides the
    `pg` fixture (`pg = tests.pg_server.postgres_fixture()`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'state.db'}"
    server = request.getfixturevalue("pg")
    return str(server.create_database(f"state_{uuid.uuid4().hex[:12]}"))
