"""Fixtures of the ingest tests: the API served for real (`start`), and a real size-limited
folder (a tmpfs) to fill a disk."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import free_port

from mad.config import Settings, load_settings
from mad.ingest.api import create_app
from mad.ingest.streams import Stream
from mad.ingest.wiring import open_configured_stream
from mad.runtime.servers import ServerThread

SmallDisk = Callable[[int], Path]
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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """`small_disk(bytes)`: a fresh folder on a tmpfs of that size, unmounted after the test.
    Skips (saying why) where mounting is not possible: it needs root and mount rights."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a size-limited folder needs root (mount -t tmpfs); not root here")
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill_disk(folder: Path) -> Path:
    """Write a file in `folder` until its file system is full; returns the file (delete it to
    free the space again)."""
    filler = folder / "filler"
    block = b"\0" * 4096
    with filler.open("wb", buffering=0) as f:
        for _ in range(1 << 20):  # bounded: at most 4 GiB
            try:
                f.write(block)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                return filler
    raise AssertionError(f"{folder} did not fill up")
