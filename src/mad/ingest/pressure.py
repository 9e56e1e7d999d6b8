"""Back-pressure of the ingest API: whether the stream can take more right now.

Two limits protect the stream: the raw writer's lag (`ingest.max_lag_records`, a 429: the
producer should slow down) and the stream's local disk use (`ingest.max_disk_bytes`, a 503:
nothing more fits until the writer catches up and retention deletes). Both come from the
stream's monitor, read at most every `ttl` seconds so a busy API does not count lag per
request; a monitor that fails makes the stream "failing" (503) instead of raising.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from mad.errors import TransientError
from mad.ingest.streams import Lag, StreamCorruptError, StreamMonitor

PRESSURE_TTL_S = 0.5
LAG_RETRY_AFTER_S = 1
DISK_RETRY_AFTER_S = 5
FAILURE_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class Reading:
    """One look at the stream: the raw writer's lag per shard and the bytes on disk."""

    lag: dict[str, Lag] = field(default_factory=dict)
    disk_bytes: int = 0
    error: str | None = None

    @property
    def lag_records(self) -> int:
        return sum(v.records for v in self.lag.values())


@dataclass(frozen=True)
class Refusal:
    """A whole request refused: HTTP status, error code, message and Retry-After seconds."""

    status: int
    code: str
    message: str
    retry_after: int


class Pressure:
    """Decides whether the stream can take more, looking at it at most every `ttl` seconds."""

    def __init__(self, monitor: StreamMonitor, consumer: str, max_lag: int, max_disk: int,
                 ttl: float = PRESSURE_TTL_S) -> None:
        self.monitor, self.consumer = monitor, consumer
        self.max_lag, self.max_disk, self.ttl = max_lag, max_disk, ttl
        self._cached: tuple[float, Reading] | None = None
        self._lock = threading.Lock()

    def read(self) -> Reading:
        """A fresh reading; a stream error becomes `error` instead of raising."""
        try:
            reading = Reading(self.monitor.lag(self.consumer), self.monitor.disk_bytes())
        except (TransientError, StreamCorruptError, OSError) as err:
            reading = Reading(error=str(err) or type(err).__name__)
        with self._lock:
            self._cached = (time.monotonic(), reading)
        return reading

    def current(self) -> Reading:
        """The last reading if younger than `ttl`, else a fresh one."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        return self.read()

    def forget(self) -> None:
        """Drop the cached reading (an append just failed: look again next time)."""
        self._cached = None

    def refusal(self) -> Refusal | None:
        """None when appends may go ahead; otherwise the 429/503 to answer."""
        r = self.current()
        if r.error is not None:
            return Refusal(503, "stream_unavailable", f"stream is failing: {r.error}",
                           FAILURE_RETRY_AFTER_S)
        if r.disk_bytes > self.max_disk:
            return Refusal(503, "stream_full",
                           f"stream holds {r.disk_bytes} bytes, over ingest.max_disk_bytes "
                           f"({self.max_disk}); the raw writer must catch up",
                           DISK_RETRY_AFTER_S)
        if r.lag_records > self.max_lag:
            return Refusal(429, "writer_behind",
                           f"raw writer '{self.consumer}' is {r.lag_records} records behind, "
                           f"over ingest.max_lag_records ({self.max_lag})", LAG_RETRY_AFTER_S)
        return None
