"""The raw writer's side of the raw files ledger: rows wait in memory while the state
database cannot take them, and are recorded once it can.

A file is recorded only after it is durable in the lake, and the lake is the truth (the
ledger feeds `mad ingest status`). So a state database that is full or unreachable must not
stop the writer, and must never make it write a file again: the row of a written file joins
a queue, the queue is retried with a doubling backoff, and the writer goes on. Only when
`max_pending` rows are waiting does the writer hold back new files (`backlog_full`), so
memory stays bounded and the stream keeps the records meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

from sqlalchemy.exc import DBAPIError, OperationalError

from mad.errors import TransientError

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class FileLedger(Protocol):
    """Where written files are recorded (`mad.state.RawFileLedger`, or a null one)."""

    def record(self, key: str, dataset: str, service: str | None, hour: int, records: int,
               nbytes: int, counts: dict[str, int],
               shards: dict[str, int] | None = None) -> None:
        """Record one file; called again with the same key it replaces the row."""
        ...

    def progress(self, consumer: str, positions: dict[str, int]) -> None:
        """Every record up to `positions` (per shard) is in a recorded file."""
        ...


class FileRow(NamedTuple):
    """The ledger row of one file in the lake."""

    key: str
    dataset: str
    service: str | None
    hour: int
    records: int
    nbytes: int
    counts: dict[str, int]
    shards: dict[str, int] | None = None  # stream records per shard


def _passing(err: Exception) -> bool:
    """Whether a ledger error may pass: disk full, database unreachable or locked."""
    if isinstance(err, TransientError | OperationalError | OSError):
        return True
    return isinstance(err, DBAPIError) and err.connection_invalidated


class RetryingLedger:
    """Records rows through the ledger `open_ledger` returns (opened on first use, so a
    database that is down when the writer starts is retried too); see the module doc."""

    def __init__(self, open_ledger: Callable[[], FileLedger],
                 clock: Callable[[], float] = time.monotonic,
                 max_pending: int = MAX_PENDING) -> None:
        self._open, self._clock, self.max_pending = open_ledger, clock, max_pending
        self._ledger: FileLedger | None = None
        self._pending: deque[FileRow] = deque()
        self._backoff = 0.0
        self._retry_at = 0.0
        self.failures = 0
        self.error: str | None = None  # why the last attempt failed; None once one worked

    @property
    def pending(self) -> int:
        """Rows of files in the lake that wait to be recorded."""
        return len(self._pending)

    @property
    def backlog_full(self) -> bool:
        return len(self._pending) >= self.max_pending

    def record(self, row: FileRow) -> None:
        """Queue `row` and record what the database takes now (unless backing off)."""
        self._pending.append(row)
        self.retry()

    def retry(self, force: bool = False) -> bool:
        """Record the waiting rows, oldest first, unless the last failure is too recent
        (`force` ignores the backoff); True when none is left waiting."""
        if not self._pending:
            return True
        if not force and self._clock() < self._retry_at:
            return False
        try:
            if self._ledger is None:
                self._ledger = self._open()
            while self._pending:
                self._ledger.record(*self._pending[0])
                self._pending.popleft()
        except Exception as err:
            if not _passing(err):
                raise
            self._failed(err)
            return False
        if self.error is not None:
            log.warning("raw writer: the state database takes rows again; every file written "
                        "meanwhile is recorded")
        self._backoff, self.error = 0.0, None
        return True

    def progress(self, consumer: str, positions: dict[str, int]) -> bool:
        """Record how far the files are landed, once every file row before it is recorded
        (never ahead of them); False when it could not be recorded now (tried again with
        the next commit)."""
        if self._pending:
            return False
        try:
            if self._ledger is None:
                self._ledger = self._open()
            self._ledger.progress(consumer, positions)
        except Exception as err:
            if not _passing(err):
                raise
            self._failed(err)
            return False
        return True

    def flush(self, attempts: int, sleep: Callable[[float], None] = time.sleep) -> int:
        """At shutdown: try `attempts` times, waiting out the backoff in between; returns
        how many rows could not be recorded (logged: their files are in the lake)."""
        for attempt in range(attempts):
            if self.retry(force=True):
                return 0
            if attempt < attempts - 1:
                sleep(self._backoff)
        log.error("raw writer: %d files are in the lake but not in the state database (%s); "
                  "`mad ingest status` will not count them, the ETL reads them all the same "
                  "(first: %s)", len(self._pending), self.error, self._pending[0].key)
        return len(self._pending)

    def _failed(self, err: Exception) -> None:
        self.failures += 1
        first = self.error is None
        self.error = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF_S), MAX_BACKOFF_S)
        self._retry_at = self._clock() + self._backoff
        log.warning("raw writer: cannot record %d files in the state database (%s); %s in "
                    "%.1f s", len(self._pending), self.error,
                    "retrying" if first else "still retrying", self._backoff)
