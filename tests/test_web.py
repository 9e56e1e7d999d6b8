"""The guard every API applies: a bearer token and a Host allowlist, on the simulator's
control API served for real (the ingest API has the same guard, tested in its suite)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mad.errors import ConfigError
from mad.web import Guard, read_token
from tests.conftest import free_port


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    env = {**os.environ, "MAD_SIMULATE__AUTH_TOKEN_FILE": str(token)}
    proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "simulate", "serve", "--port",
                             str(port), "--sink", str(tmp_path / "events.jsonl")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(20)


def test_every_route_but_health_needs_the_token(guarded: str) -> None:
    assert httpx.get(f"{guarded}/health").status_code == 200
    missing = httpx.get(f"{guarded}/api/status")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error_code"] == "unauthorized"
    wrong = httpx.get(f"{guarded}/api/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = httpx.get(f"{guarded}/api/status", headers={"Authorization": "Bearer t0k3n"})
    assert ok.status_code == 200 and ok.json()["running"] is False


def test_a_loopback_api_refuses_other_host_names(guarded: str) -> None:
    auth = {"Authorization": "Bearer t0k3n"}
    for host in ("evil.example.com", "evil.example.com:8000", "10.0.0.1"):
        resp = httpx.get(f"{guarded}/api/status", headers={**auth, "Host": host})
        assert resp.status_code == 421, host
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000"):
        resp = httpx.get(f"{guarded}/api/status", headers={**auth, "Host": host})
        assert resp.status_code == 200, host


async def _app(scope: object, receive: object, send: object) -> None:
    return None


def test_binding_beyond_loopback_without_a_token_warns(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    with caplog.at_level(logging.WARNING):
        Guard(_app, token=None, allowed_hosts=[], bind_host="0.0.0.0", name="ingest API")
    assert "without a token" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Guard(_app, token="x", allowed_hosts=["mad.example.com"], bind_host="0.0.0.0",
              name="ingest API")
        Guard(_app, token=None, allowed_hosts=[], bind_host="127.0.0.1", name="ingest API")
    assert caplog.text == ""


def test_token_files(tmp_path: Path) -> None:
    assert read_token("inline", None, "x.auth_token") == "inline"
    assert read_token(None, None, "x.auth_token") is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_token(None, tmp_path / "empty", "x.auth_token")
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(None, tmp_path / "missing", "x.auth_token")
