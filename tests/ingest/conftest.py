"""Fixtures of the ingest tests: the API served for real (`start`); `small_disk` (a real
size-limited folder) comes from tests/disks.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import free_port
from tests.disks import small_disk  # noqa: F401  (a fixture for the ingest tests)

from mad.config import Settings, load_settings
from mad.ingest.api import create_app
from mad.ingest.streams import Stream
from mad.ingest.wiring import open_configured_stream
from mad.runtime.servers import ServerThread

NDJSON = {"content-type": "application/x-ndjson"}


class ApiServer:
    """The app served as `mad ingest serve` serves it (`ServerThread`: uvicorn in a thread
    with the API's connection bounds), on a free port, over a stream it does not own."""

    def __init__(self, settings: Settings, stream: Stream) -> None:
        self.stream = stream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ServerThread(create_app(settings, stream), "127.0.0.1", self.port,
                                   "test-ingest-api")
        self.server.start()
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post("/v1/events", content=body, headers=headers or NDJSON)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


Start = Callable[..., ApiServer]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start an API with `ingest.*` overrides, e.g. `start(max_lag_records=1)`; its data
    folder is `tmp_path / "data<n>"` for the n-th API of the test."""
    running: list[tuple[ApiServer, Stream]] = []

    def run(**ingest: Any) -> ApiServer:
        overrides = {f"ingest.{k}": v for k, v in ingest.items()}
        overrides.update({"data_dir": str(tmp_path / f"data{len(running)}"),
                          "ingest.stream.embedded.shards": 2})
        settings = load_settings(config_file=None, env={}, overrides=overrides)
        stream = open_configured_stream(settings)
        server = ApiServer(settings, stream)
        running.append((server, stream))
        return server

    yield run
    for server, stream in running:
        server.stop()
        stream.close()
