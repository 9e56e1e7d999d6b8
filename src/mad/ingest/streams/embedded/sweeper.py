"""The owner's retention timer.

Retention runs after commits and segment rolls, but age-based retention also needs a clock:
a segment grows old while nothing happens, and a quiet stream must still drop what is past
`retention_seconds` (and notice commits that reader processes made meanwhile). So the owner
starts a `Sweeper` that applies retention every `interval` seconds on a daemon thread, and
stops it in `close()` before the files it works on are closed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Sweeper:
    """Calls `sweep` every `interval` seconds until stopped; a pass that fails is logged and
    tried again at the next one, so a passing disk or database hiccup does not end it."""

    def __init__(self, sweep: Callable[[], object], interval: float,
                 name: str = "stream-retention") -> None:
        if not interval > 0:
            raise ValueError(f"sweep interval must be > 0 seconds, got {interval}")
        self._sweep, self.interval = sweep, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for a pass in progress to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sweep()
            except Exception as err:
                log.error("stream retention pass failed (retried in %.0f s): %s",
                          self.interval, err)
