"""Posting NDJSON lines to the ingest API in requests it accepts: at most
`ingest.max_records` records and `ingest.max_body_bytes` bytes each. Used by the first-start
backfill (`batches`) and by `mad ingest post FILE` (`post_file`).

`post_file` reads a JSONL or JSONL.gz file line by line (memory bounded by one request),
retries a request the API is too busy for (408, 429, 5xx, connection errors; `Retry-After`
honoured) a bounded number of times, halves a request the API still finds too large (its
limits may be lower than ours), and counts what came back: accepted, duplicates (an event_id
already accepted earlier in the same file) and rejected by reason.
"""

from __future__ import annotations

import gzip
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import httpx
import orjson

from mad.errors import MadError, TransientError

MAX_ATTEMPTS = 8
BACKOFF_S = 0.25
MAX_BACKOFF_S = 10.0
TIMEOUT_S = 60.0
RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})
TOO_LONG = "line_over_body_limit"


def batches(lines: Iterable[bytes], max_records: int, max_bytes: int) -> Iterator[list[bytes]]:
    """`lines` in order, grouped so that no group holds more than `max_records` lines or
    `max_bytes` bytes (a single line over `max_bytes` is a group of its own)."""
    group: list[bytes] = []
    size = 0
    for line in lines:
        if group and (len(group) >= max_records or size + len(line) > max_bytes):
            yield group
            group, size = [], 0
        group.append(line)
        size += len(line)
    if group:
        yield group


@dataclass
class Totals:
    """What the API answered for the records of a file."""

    lines: int = 0
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.rejected.most_common())
        rejected = self.rejected.total()
        return (f"{self.lines} records in {self.requests} requests: {self.accepted} accepted, "
                f"{self.duplicates} duplicates (an event_id accepted before in this file; the "
                f"ETL keeps one), {rejected} rejected" + (f" ({reasons})" if reasons else ""))


class Poster:
    """Posts groups of lines to `url`, splitting what the API finds too large."""

    def __init__(self, url: str, token: str | None, timeout_s: float = TIMEOUT_S) -> None:
        if not url.startswith(("http://", "https://")):
            raise MadError(f"--url {url!r} is not an http:// or https:// URL")
        self.url = url
        self.client = httpx.Client(timeout=timeout_s)
        self.headers = {"content-type": "application/x-ndjson"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self.totals = Totals()
        self._seen: set[str] = set()

    def post(self, lines: list[bytes]) -> None:
        """Post `lines` (one request, or halves of it while the API says 413)."""
        status, doc = self._request(b"".join(lines))
        if status == 413:
            if len(lines) == 1:
                self.totals.lines += 1
                self.totals.rejected[str(doc.get("error_code") or "body_too_large")] += 1
                return
            half = len(lines) // 2
            self.post(lines[:half])
            self.post(lines[half:])
            return
        self._count(len(lines), doc)

    def _request(self, body: bytes) -> tuple[int, dict[str, Any]]:
        delay, last = BACKOFF_S, ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                resp = self.client.post(self.url, content=body, headers=self.headers)
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}"
            else:
                self.totals.requests += 1
                if resp.status_code == 200 or resp.status_code == 413:
                    return resp.status_code, _json(resp)
                last = f"HTTP {resp.status_code} {resp.text[:200]}"
                if resp.status_code not in RETRY:
                    raise MadError(f"the ingest API refused a request: {last} "
                                   f"({self._so_far()})")
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            if attempt < MAX_ATTEMPTS:
                time.sleep(min(delay, MAX_BACKOFF_S))
                delay *= 2
        raise TransientError(f"the ingest API at {self.url} failed {MAX_ATTEMPTS} times: "
                             f"{last} ({self._so_far()}; posting the file again is safe: "
                             "the ETL drops duplicates by event_id)")

    def _count(self, sent: int, doc: dict[str, Any]) -> None:
        t = self.totals
        t.lines += sent
        listed: Counter[str] = Counter()
        for rec in doc.get("records") or []:
            if not isinstance(rec, dict):
                continue
            if rec.get("status") == "accepted":
                event_id = str(rec.get("event_id"))
                if event_id in self._seen:
                    t.duplicates += 1
                else:
                    self._seen.add(event_id)
                    t.accepted += 1
            else:
                listed[str(rec.get("error_code") or "rejected")] += 1
        by_reason = doc.get("rejected_by_reason")
        if isinstance(by_reason, dict):
            t.rejected.update({str(k): int(v) for k, v in by_reason.items()})
        else:
            t.rejected.update(listed)

    def _so_far(self) -> str:
        return f"{self.totals.accepted + self.totals.duplicates} records acknowledged so far"

    def close(self) -> None:
        self.client.close()


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        doc = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise MadError(f"the ingest API answered {resp.status_code} with a body that is not "
                       "JSON (is --url the ingest API's /v1/events?)") from None
    return doc if isinstance(doc, dict) else {}


def read_lines(f: IO[bytes], max_bytes: int) -> Iterator[bytes | None]:
    """The non-blank lines of `f`, each ending in a newline; None for a line longer than
    `max_bytes` (skipped without holding it in memory)."""
    while True:
        line = f.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes:
            while line and not line.endswith(b"\n"):
                line = f.readline(1 << 20)
            yield None
            continue
        if line.strip():
            yield line if line.endswith(b"\n") else line + b"\n"


def post_file(path: Path, poster: Poster, max_records: int, max_bytes: int,
              on_progress: Callable[[int, int], None] = lambda done, total: None) -> Totals:
    """Post every line of `path` (JSONL, or JSONL.gz by its first bytes); `on_progress`
    gets (bytes of the file read, its size) after each request."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as err:
        raise MadError(f"cannot read {path}: {err.strerror or err}") from None
    with raw:
        size = path.stat().st_size
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if compressed else raw
        lines = read_lines(f, max_bytes)
        try:
            for group in batches(_sendable(lines, poster.totals), max_records, max_bytes):
                poster.post(group)
                on_progress(raw.tell(), size)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise MadError(f"cannot read {path} to its end ({err}); "
                           f"{poster.totals.accepted + poster.totals.duplicates} records were "
                           "acknowledged before") from None
    return poster.totals


def _sendable(lines: Iterator[bytes | None], totals: Totals) -> Iterator[bytes]:
    for line in lines:
        if line is None:
            totals.lines += 1
            totals.rejected[TOO_LONG] += 1
        else:
            yield line
