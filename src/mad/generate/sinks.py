"""Where the live simulator sends its lines: a JSONL file, or the ingest API over HTTP.

A sink is chosen by the shape of `simulate.sink`: an `http://` or `https://` URL posts NDJSON
batches (bounded retries with backoff; 429/503 `Retry-After` is honoured); anything else is a
file path that lines are appended to.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Protocol

import httpx

from mad.errors import MadError, TransientError

MAX_ATTEMPTS = 5
BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0
BATCH_LINES = 1000  # lines per request
BATCH_BYTES = 4 * 2**20  # bytes per request, under the ingest API's 5 MiB default


class EventSink(Protocol):
    def send(self, lines: list[bytes]) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Appends lines to a JSONL file, flushed after every batch."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise MadError(f"cannot open sink file {path}: {err.strerror or err}") from None
        self.path = path

    def send(self, lines: list[bytes]) -> None:
        self.file.write(b"".join(lines))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class HttpSink:
    """Posts NDJSON batches to the ingest API (at most `BATCH_LINES` lines and
    `BATCH_BYTES` bytes each, within the API's request limits); retries 429/5xx and
    connection errors; sends `token` as a bearer token when given."""

    def __init__(self, url: str, timeout_s: float = 10.0, token: str | None = None) -> None:
        self.url = url
        self.client = httpx.Client(timeout=timeout_s)
        self.headers = {"content-type": "application/x-ndjson"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"

    def send(self, lines: list[bytes]) -> None:
        start, size = 0, 0
        for i, line in enumerate(lines):
            if i > start and (i - start >= BATCH_LINES or size + len(line) > BATCH_BYTES):
                self._post(b"".join(lines[start:i]))
                start, size = i, 0
            size += len(line)
        if start < len(lines):
            self._post(b"".join(lines[start:]))

    def _post(self, body: bytes) -> None:
        delay = BACKOFF_S
        last = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                resp = self.client.post(self.url, content=body, headers=self.headers)
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if resp.status_code < 300:
                    return
                last = f"HTTP {resp.status_code}"
                if resp.status_code not in (408, 429) and resp.status_code < 500:
                    raise MadError(f"ingest API refused the batch: {last} {resp.text[:200]}")
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            if attempt < MAX_ATTEMPTS:
                time.sleep(min(delay, MAX_BACKOFF_S))
                delay *= 2
        raise TransientError(f"ingest API at {self.url} failed {MAX_ATTEMPTS} times: {last}")

    def close(self) -> None:
        self.client.close()


def open_sink(target: str, token: str | None = None) -> EventSink:
    """The sink for `simulate.sink`; `token` is the ingest API's, for an http(s) sink."""
    if target.startswith(("http://", "https://")):
        return HttpSink(target, token=token)
    return FileSink(Path(target))
