"""The live simulator as a supervised part of `mad up`: its control API in a thread of the
supervisor, and one live run posting to the ingest API, started once the backfill is done.

A run that ends by itself (it should not: `duration_seconds` is 0) is restarted with the
restart budget of any part; a run stopped through the control API stays stopped (the
operator's call) until the control API starts one again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from mad.config import Settings
from mad.generate.live import LiveController, StartRequest
from mad.generate.live import create_app as simulator_app
from mad.runtime.health import Board
from mad.runtime.keeper import Restarts
from mad.runtime.servers import ServerThread

log = logging.getLogger(__name__)
NAME = "simulator"


class LiveSimulator:
    """The control API and the live run of `rate` events/s into `sink_url`."""

    def __init__(self, settings: Settings, rate: float, sink_url: str, board: Board,
                 clock: Callable[[], float] = time.monotonic) -> None:
        sim_settings = settings.model_copy(deep=True)
        sim_settings.simulate.sink = sink_url
        self.rate, self.board, self.clock = rate, board, clock
        self.controller = LiveController(sim_settings)
        cfg = settings.simulate
        self.server = ServerThread(simulator_app(sim_settings, self.controller), cfg.host,
                                   cfg.port, "mad-simulator")
        self.budget = Restarts(NAME, settings.supervisor, clock)
        self.due: float | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start_api(self, waits_for_backfill: bool) -> None:
        self.server.start()
        self.board.set(NAME, "starting", pid=os.getpid(), url=self.url,
                       detail="starts when the backfill is done" if waits_for_backfill else "")

    def watch(self, may_run: bool) -> None:
        """Start the run once `may_run`; restart one that ended by itself when it is due.
        Raises ServiceFailed past the restart budget."""
        if not self.server.alive():
            self.board.set(NAME, "failed", last_exit="control API stopped unexpectedly")
            return
        run = self.controller.run
        if run is None:
            if may_run:
                self._start_run()
            return
        if self.controller.running():
            self.board.set(NAME, "running")
        elif run.stop_flag.is_set():
            self.board.set(NAME, "stopped", required=False, detail="stopped through its "
                           "control API (POST /api/continuous/start starts it again)")
        elif self.due is None:
            why = f"run ended unexpectedly ({run.last_error or 'no error recorded'})"
            delay = self.budget.next_delay(why)
            log.warning("simulator %s; restarting it in %.1f s (restart %d)", why, delay,
                        self.budget.total)
            self.due = self.clock() + delay
            self.board.set(NAME, "restarting", restarts=self.budget.total, last_exit=why)
        elif self.clock() >= self.due:
            self.due = None
            self._start_run()

    def _start_run(self) -> None:
        self.controller.start(StartRequest(interval_seconds=1.0,
                                           logs_per_interval=max(1, round(self.rate)),
                                           duration_seconds=0))
        if self.budget.total == 0:
            print(f"simulator control API on {self.url} -> {self.rate:g} events/s", flush=True)
        self.board.set(NAME, "running", detail=f"{self.rate:g} events/s")

    def stop(self) -> None:
        """The run (its last batch acknowledged, its labels written), then the API."""
        self.controller.close()
        self.server.stop()
