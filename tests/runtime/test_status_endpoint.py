"""The supervisor's status endpoint on a real server (a free loopback port), over a board
the test sets: 200 only when every required part runs, Prometheus text, bad requests
answered, never served to a foreign Host; and the batching that keeps requests under the
ingest API's limits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mad.runtime.health import Board
from mad.runtime.poster import batches, read_lines
from mad.runtime.servers import ServerThread
from mad.runtime.status import create_app
from tests.conftest import free_port


@pytest.fixture
def served() -> Iterator[tuple[Board, str]]:
    board = Board()
    port = free_port()
    server = ServerThread(create_app(board, "127.0.0.1"), "127.0.0.1", port, "mad-status")
    server.start()
    yield board, f"http://127.0.0.1:{port}"
    server.stop()


def test_health_is_200_only_when_every_required_part_runs(served: tuple[Board, str]) -> None:
    board, url = served
    board.set("etl", "running", pid=12, restarts=0)
    board.set("dashboard", "stopped", required=False, detail="off")
    resp = httpx.get(f"{url}/health")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"
    assert resp.json()["components"]["etl"] == {
        "status": "running", "pid": 12, "restarts": 0, "last_exit": None, "url": None,
        "detail": "", "required": True}
    board.set("etl", "restarting", pid=None, restarts=1, last_exit="was killed by signal 9")
    resp = httpx.get(f"{url}/health")
    assert resp.status_code == 503 and resp.json()["status"] == "degraded"
    assert resp.json()["components"]["etl"]["restarts"] == 1
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'mad_component_restarts_total{component="etl"} 1' in metrics.text
    assert 'mad_component_up{component="etl"} 0' in metrics.text
    assert 'mad_component_up{component="dashboard"} 0' in metrics.text


def test_bad_requests_are_answered_not_crashed(served: tuple[Board, str]) -> None:
    board, url = served
    board.set("etl", "running")
    assert httpx.post(f"{url}/health").status_code == 405
    assert httpx.get(f"{url}/nope").status_code == 404
    assert httpx.get(f"{url}/health", headers={"host": "evil.example"}).status_code == 421
    assert httpx.get(f"{url}/health").status_code == 200


def test_batches_stay_under_both_limits() -> None:
    lines = [b"x" * n + b"\n" for n in (10, 20, 30, 5, 5, 100, 1, 1, 1)]
    groups = list(batches(lines, max_records=3, max_bytes=40))
    assert [line for g in groups for line in g] == lines  # all, in order
    for group in groups:
        assert len(group) <= 3
        assert sum(map(len, group)) <= 40 or len(group) == 1  # a long line goes alone
    assert [len(g) for g in groups] == [2, 2, 1, 1, 3]


def test_read_lines_skips_blank_lines_and_flags_long_ones() -> None:
    data = b'{"a": 1}\n\n   \n' + b"y" * 500 + b"\n" + b'{"b": 2}'
    got = list(read_lines(io.BytesIO(data), max_bytes=100))
    assert got == [b'{"a": 1}\n', None, b'{"b": 2}\n']


def test_quality_counters_are_served_from_the_board(served: tuple[Board, str],
                                                    tmp_path: Path) -> None:
    from mad.config import load_settings
    from mad.query.quality import counters
    from mad.runtime.health import Reporter
    from mad.state import Components, open_state
    from tests.query.quality_rows import DATASET, hours_of, record_run, run_results

    board, url = served
    assert "mad_quality" not in httpx.get(f"{url}/metrics").text  # nothing read yet
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path)})
    hours = hours_of(datetime(2026, 11, 1, tzinfo=UTC), 3)
    record_run(settings, "events-test-1", run_results(hours, failing=hours[1]))
    engine = open_state(settings.state_url)
    reporter = Reporter(board, lambda: Components(engine),
                        counters={"quality": lambda: counters(settings)})
    reporter.refresh_counters()  # what the reporter's thread does every COUNTERS_EVERY_S
    engine.dispose()
    text = httpx.get(f"{url}/metrics").text
    assert "# TYPE mad_quality_results_total counter" in text
    assert 'mad_quality_results_total{check="completeness",status="fail"} 1' in text
    assert 'mad_quality_results_total{check="completeness",status="pass"} 5' in text
    assert 'mad_quality_results_total{check="volume",status="warn"} 1' in text
    assert 'mad_quality_partitions{gate="held"} 1' in text
    assert 'mad_quality_partitions{gate="open"} 2' in text
    assert 'mad_quality_partitions{gate="accepted"} 0' in text
    score = next(float(line.split()[1]) for line in text.splitlines()
                 if line.startswith("mad_quality_last_run_score "))
    assert 0 < score < 100
    health = httpx.get(f"{url}/health").json()
    assert health["quality"]["partitions"] == {"held": 1, "accepted": 0, "open": 2}
    assert health["quality"]["last_run_score"] == score
    from mad.query.quality import accept

    accept(settings, hours[1], "checked", by="ops", dataset=DATASET)
    reporter.refresh_counters()
    assert 'mad_quality_partitions{gate="accepted"} 1' in httpx.get(f"{url}/metrics").text


def test_quality_counters_before_the_first_run_say_so() -> None:
    from mad.runtime.status import metrics_text

    board = Board()
    board.set_counters("quality", {"results": {}, "gate": {"held": 0, "accepted": 0,
                                                          "open": 0},
                                   "last_run_score": None})
    text = metrics_text(board)
    assert "mad_quality_last_run_score NaN" in text
    assert 'mad_quality_partitions{gate="held"} 0' in text


def test_the_read_api_is_served_beside_health_with_its_own_token(tmp_path: Path) -> None:
    """`mad up` serves the read API on the status endpoint's port: `/v1/...` and
    `/openapi.json` need `api.auth_token`, `/health` and `/metrics` stay open."""
    from mad.config import load_settings
    from mad.query.api import create_app as read_api

    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path),
                                                "api.auth_token": "s3cret"})
    board = Board()
    board.set("etl", "running")
    port = free_port()
    server = ServerThread(create_app(board, "127.0.0.1", read_api(settings)), "127.0.0.1",
                          port, "mad-status")
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 200
        assert httpx.get(f"{url}/v1/runs").status_code == 401
        auth = {"authorization": "Bearer s3cret"}
        doc = httpx.get(f"{url}/openapi.json", headers=auth)
        assert doc.status_code == 200 and "/v1/incidents" in doc.json()["paths"]
        runs = httpx.get(f"{url}/v1/runs", headers=auth)
        assert runs.status_code == 503 and "state" in runs.json()["message"]  # none yet
        bad = httpx.get(f"{url}/v1/series?window=2m&service=x&start=a&end=b", headers=auth)
        assert bad.status_code == 400 and "\n" not in bad.json()["message"]
    finally:
        server.stop()
