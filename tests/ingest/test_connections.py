"""The ingest API's connection bounds with real sockets: idle and slow clients, a client that
goes away mid-body, the connection limit, and a low file descriptor limit."""

from __future__ import annotations

import logging
import os
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from tests.conftest import free_port
from tests.ingest.conftest import ApiServer, Start
from tests.ingest.test_api import event, metric_samples, ndjson

HEAD = (b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def until_closed(sock: socket.socket, seconds: float = 20) -> bytes:
    """Everything the server sends until it closes the connection (bounded in time)."""
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
    pytest.fail(f"the server kept the connection open for {seconds:.0f} s")


def trickle(sock: socket.socket, pieces: Iterator[bytes], every: float) -> bytes:
    """Send one piece every `every` seconds until the server answers or closes; returns what
    it sent (at most 200 pieces)."""
    for _ in range(200):
        ready, _, _ = select.select([sock], [], [], every)
        if ready:
            return until_closed(sock)
        try:
            sock.sendall(next(pieces))
        except (BrokenPipeError, ConnectionResetError):
            return until_closed(sock)
    pytest.fail("the server took a slow client for 200 pieces")


def samples_of(api: ApiServer, name: str, **labels: str) -> float:
    return metric_samples(api).get((name, tuple(sorted(labels.items()))), 0.0)


def test_an_idle_connection_is_closed_after_the_header_timeout(start: Start) -> None:
    api = start(header_timeout_s=0.5)
    with connect(api.port) as sock:
        answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error_code"] == "header_timeout"
    assert samples_of(api, "mad_ingest_header_timeouts_total") == 1


def test_a_request_head_sent_byte_by_byte_is_cut_off(start: Start) -> None:
    api = start(header_timeout_s=1)
    with connect(api.port) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = trickle(sock, iter(lambda: b"X", None), every=0.1)  # one byte per 0.1 s
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert api.client.get("/health").status_code == 200


def test_a_kept_alive_connection_is_closed_when_idle(start: Start) -> None:
    api = start(keep_alive_s=1, header_timeout_s=30)
    body = ndjson([event("keep-alive-1")])
    with connect(api.port) as sock:
        sock.sendall(HEAD % len(body) + body)
        answer = until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"keep-alive-1" in answer


def test_a_body_that_does_not_arrive_in_time_is_a_408(start: Start) -> None:
    api = start(body_timeout_s=1)
    with connect(api.port) as sock:
        sock.sendall(HEAD % 100_000 + b'{"event_id": ')
        answer = trickle(sock, iter(lambda: b" ", None), every=0.1)  # a 10 byte/s body
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert orjson.loads(body)["error_code"] == "body_timeout"
    assert set(orjson.loads(body)) == {"error_code", "message"}  # the documented 408 model
    assert samples_of(api, "mad_ingest_request_errors_total", reason="body_timeout") == 1
    assert samples_of(api, "mad_ingest_requests_total", code="408") == 1


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_client_gone_mid_body_is_one_line_and_a_counter(start: Start) -> None:
    lines = Lines()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "mad.ingest.api")]
    for logger in loggers:
        logger.addHandler(lines)
    try:
        api = start()
        with connect(api.port) as sock:
            sock.sendall(HEAD % 100_000 + b'{"event_id": "half')
            time.sleep(0.2)  # the handler is reading the body now
        for _ in range(200):  # at most 10 s
            if samples_of(api, "mad_ingest_client_disconnects_total") == 1:
                break
            time.sleep(0.05)
        assert samples_of(api, "mad_ingest_client_disconnects_total") == 1
        assert api.post(ndjson([event("after-disconnect")])).status_code == 200
    finally:
        for logger in loggers:
            logger.removeHandler(lines)
    assert [r.exc_info for r in lines.records if r.exc_info] == []
    said = [r.getMessage() for r in lines.records]
    assert len(said) == 1 and "went away" in said[0], said


def test_past_max_connections_a_request_is_a_503_and_health_still_answers(
    start: Start,
) -> None:
    api = start(max_connections=4, header_timeout_s=30)
    idle = [connect(api.port) for _ in range(5)]
    try:
        with httpx.Client(base_url=api.url, timeout=10) as fresh:
            refused = fresh.post("/v1/events", content=ndjson([event("busy")]),
                                 headers={"content-type": "application/x-ndjson"})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error_code"] == "too_many_connections"
            assert set(refused.json()) == {"error_code", "message"}  # as the 503 documented
            assert fresh.get("/health").status_code == 200
        assert samples_of(api, "mad_ingest_open_connections") >= 5
        idle += [connect(api.port) for _ in range(6)]  # past the hard limit (4 + 4)
        assert until_closed(idle[0]).startswith(b"HTTP/1.1 408 ")  # the oldest idle goes
        assert api.client.get("/health").status_code == 200  # a new client still gets in
        assert samples_of(api, "mad_ingest_header_timeouts_total") >= 3
    finally:
        for sock in idle:
            sock.close()
    for _ in range(100):  # the idle sockets are gone: the API takes requests again
        with httpx.Client(base_url=api.url, timeout=10) as fresh:
            resp = fresh.post("/v1/events", content=ndjson([event("free-again")]),
                              headers={"content-type": "application/x-ndjson"})
        if resp.status_code == 200:
            break
        time.sleep(0.05)
    assert resp.status_code == 200
    assert samples_of(api, "mad_ingest_connections_refused_total") >= 1


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


def test_idle_sockets_cannot_take_every_descriptor(tmp_path: Path) -> None:
    """`mad ingest serve` with 128 descriptors and 120 idle clients: /health still answers,
    and once the idle sockets time out the API takes events again."""
    port = free_port()
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"), "MAD_INGEST__PORT": str(port),
           "MAD_INGEST__HEADER_TIMEOUT_S": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "ingest", "serve", "--no-writer"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=low_fd_limit)
    idle: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        idle = [connect(port) for _ in range(120)]
        time.sleep(0.5)  # let the server accept them all
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 200, health.text
        for _ in range(200):  # at most about 20 s: the idle ones are closed after 2 s
            resp = httpx.post(f"{url}/v1/events", content=ndjson([event("fd-1")]),
                              headers={"content-type": "application/x-ndjson"}, timeout=10)
            if resp.status_code == 200:
                break
            assert resp.status_code == 503
            time.sleep(0.1)
        assert resp.status_code == 200, resp.text
    finally:
        for sock in idle:
            sock.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "serving at most" in err.decode(), err.decode()[-2000:]
