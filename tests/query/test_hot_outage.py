"""Redis killed mid-run (SIGKILL: everything it held is gone): reads, and the read API on a
real server, keep answering from the lake with the same rows and no error; an ETL pass still
succeeds and says the hot store was not updated; the supervisor's probe shows it down in
/health and /metrics. Redis back on the same port: the next sync refills it and reads use it
again."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from mad.config import load_settings
from mad.hotstore.feed import HotFeed
from mad.query import hot as hot_reads
from mad.query.api import create_app
from mad.query.services import anomalies, service_metrics
from mad.runtime.health import Board, Reporter
from mad.runtime.hot import HotStoreProbe
from mad.runtime.servers import ServerThread
from mad.runtime.status import health_document, metrics_text
from tests.conftest import free_port
from tests.query.conftest import BuiltLake, copy_lake
from tests.redis_server import RedisServer

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CLOCK = (T0 + timedelta(hours=2, minutes=10)).timestamp()
SPAN = (T0 + timedelta(minutes=30), T0 + timedelta(hours=2))


def reads(settings: object) -> tuple[list[object], list[object]]:
    return (list(service_metrics(settings, "1m", *SPAN)),  # type: ignore[arg-type]
            list(anomalies(settings, *SPAN)))  # type: ignore[arg-type]


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mad.cli", *args, "--config",
                           str(root / "mad.yaml")], capture_output=True, text=True,
                          timeout=300, check=False)


def test_redis_killed_then_back(pipeline_lake: BuiltLake, tmp_path: Path) -> None:
    built = copy_lake(pipeline_lake, tmp_path / "copy")
    server = RedisServer(tmp_path).start()
    with ExitStack() as stack:
        stack.callback(server.stop)
        stack.callback(hot_reads.forget)
        layers = {"data_dir": str(built.root), "store.horizon_h": 1,
                  "store.hot.backend": "redis", "store.hot.redis.url": server.url,
                  "store.retry_s": 0.2, "store.hot.redis.timeout_s": 0.3}
        (built.root / "mad.yaml").write_text(
            f"data_dir: {built.root}\nstore:\n  horizon_h: 1\n  hot:\n    backend: redis\n"
            f"    redis:\n      url: {server.url}\n      timeout_s: 0.3\n")
        settings = load_settings(env={}, overrides=layers)
        lake_only = load_settings(env={}, overrides={**layers, "store.enabled": False})
        hot_reads.forget()
        expected = reads(lake_only)
        assert expected[0] and expected[1], "nothing to compare"
        feed = HotFeed(settings, clock=lambda: CLOCK)
        assert feed.sync().error is None
        port = free_port()
        api = ServerThread(create_app(settings), "127.0.0.1", port, "mad-read-api")
        api.start()
        stack.callback(api.stop)
        query = {"window": "1m", "start": SPAN[0].isoformat(), "end": SPAN[1].isoformat()}
        served = httpx.get(f"http://127.0.0.1:{port}/v1/metrics/services", params=query)
        assert served.status_code == 200 and served.json()["rows"]
        assert served.json()["source"] == "hot+lake"
        assert hot_reads.split(settings, "aggregates", "1m", *SPAN).source == "hot+lake"
        assert reads(settings) == expected
        board = Board()
        probe = HotStoreProbe(settings, board)
        reporter = Reporter(board, lambda: None, counters={"store": probe.read})  # type: ignore[arg-type,return-value]
        reporter.refresh_counters()
        assert 'mad_hot_store_up{backend="redis"} 1' in metrics_text(board)

        server.kill()
        failures = hot_reads.counters()["hot_failures"]
        assert reads(settings) == expected  # no error reaches the caller
        again = httpx.get(f"http://127.0.0.1:{port}/v1/metrics/services", params=query)
        assert again.status_code == 200 and again.json()["source"] == "lake"
        assert again.json()["rows"] == served.json()["rows"]
        assert hot_reads.counters()["hot_failures"] == failures + 1
        assert hot_reads.split(settings, "aggregates", "1m", *SPAN).source == "lake"
        report = feed.sync()
        assert report.error and "hot store" in report.line()
        assert feed.status()["ok"] is False and feed.failing_since is not None
        etl = cli(built.root, "etl", "run")
        assert etl.returncode == 0, etl.stderr
        assert "hot store not updated" in etl.stdout
        status = cli(built.root, "store", "status")
        assert status.returncode == 3 and "DOWN" in status.stdout
        reporter.refresh_counters()
        code, doc = health_document(board)
        assert doc["components"]["hot store"]["status"] == "failed"  # type: ignore[index]
        assert code == 200, "reads use the lake: a hot store down is not the pipeline down"
        assert 'mad_hot_store_up{backend="redis"} 0' in metrics_text(board)

        server.start()  # empty: nothing was saved
        time.sleep(0.3)  # past store.retry_s
        assert hot_reads.split(settings, "aggregates", "1m", *SPAN).source == "lake"
        refill = feed.sync()
        assert refill.error is None and refill.rows_written > 0
        assert feed.status()["ok"] and feed.failing_since is None
        assert hot_reads.split(settings, "aggregates", "1m", *SPAN).source == "hot+lake"
        assert reads(settings) == expected
        back = httpx.get(f"http://127.0.0.1:{port}/v1/metrics/services", params=query)
        assert back.status_code == 200 and back.json() == served.json()  # hot+lake again
        reporter.refresh_counters()
        assert 'mad_hot_store_up{backend="redis"} 1' in metrics_text(board)
        probe.close()
