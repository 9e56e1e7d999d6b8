"""The health of the supervised components: what the supervisor knows of each one (`Board`,
in memory, read by `GET /health`) and the thread that copies it into the state database
(`Reporter`, `runtime_components`) about every 2 s and at each change. The same thread puts
the quality counters (`mad.query.quality.counters`) on the board every COUNTERS_EVERY_S, so
`GET /metrics` answers from memory whatever the size of the quality history.

A component that is switched off, or a one-shot job that finished (the backfill), is listed
but not `required`: `/health` is 200 when every required component is running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mad.errors import MadError
from mad.state.components import Components, Report, Status

log = logging.getLogger(__name__)

COMPONENTS = ("simulator", "ingest API", "stream", "raw writer", "etl", "detection",
              "hot store", "dashboard", "backfill")
"""Every component `mad up` supervises, in the order they are shown."""
REPORT_EVERY_S = 2.0
COUNTERS_EVERY_S = 15.0
MIN_GAP_S = 0.5  # between two reports, however often the board changes


@dataclass(frozen=True)
class State:
    """One component as the supervisor sees it."""

    status: Status
    pid: int | None = None
    restarts: int = 0
    last_exit: str | None = None
    url: str | None = None
    detail: str = ""
    required: bool = True  # counts for /health

    @property
    def ok(self) -> bool:
        return self.status == "running" or not self.required

    def public(self) -> dict[str, Any]:
        return {"status": self.status, "pid": self.pid, "restarts": self.restarts,
                "last_exit": self.last_exit, "url": self.url, "detail": self.detail,
                "required": self.required}


class Board:
    """The current state of each component; thread-safe. `changed` is set at each change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, State] = {}
        self._counters: dict[str, dict[str, Any]] = {}
        self.changed = threading.Event()

    def set(self, name: str, status: Status, **fields: Any) -> None:
        """Set `name`'s status; fields not given keep their value (restarts, url ...)."""
        with self._lock:
            old = self._states.get(name)
            new = replace(old, status=status, **fields) if old is not None \
                else State(status, **fields)
            if new != old:
                self._states[name] = new
                self.changed.set()

    def get(self, name: str) -> State | None:
        with self._lock:
            return self._states.get(name)

    def snapshot(self) -> dict[str, State]:
        """Every component, in `COMPONENTS` order (others after)."""
        with self._lock:
            states = dict(self._states)
        order = {name: i for i, name in enumerate(COMPONENTS)}
        return dict(sorted(states.items(), key=lambda kv: order.get(kv[0], len(order))))

    def healthy(self) -> bool:
        return all(state.ok for state in self.snapshot().values())

    def set_counters(self, name: str, values: dict[str, Any]) -> None:
        """Keep the latest counters of `name` (e.g. `quality`) for `/metrics` and `/health`;
        not a change of any component."""
        with self._lock:
            self._counters[name] = values

    def counters(self, name: str) -> dict[str, Any] | None:
        """The latest counters of `name`, None before the first read."""
        with self._lock:
            return self._counters.get(name)


class Reporter:
    """Copies the board into `runtime_components` every `every_s` and at each change, in a
    thread of its own (a busy state database never holds up the supervisor's loop)."""

    def __init__(self, board: Board, open_components: Callable[[], Components],
                 every_s: float = REPORT_EVERY_S,
                 counters: dict[str, Callable[[], dict[str, Any]]] | None = None,
                 counters_every_s: float = COUNTERS_EVERY_S) -> None:
        self.board, self.every_s = board, every_s
        self.read_counters = counters or {}  # name -> read, put on the board
        self.counters_every_s = counters_every_s
        self._counters_due = 0.0
        self.open_components = open_components  # called until it works (the database may
        self.components: Components | None = None  # be down when the supervisor starts)
        self._stop = threading.Event()
        self._failing = False
        self.thread = threading.Thread(target=self._run, name="mad-health-report",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.write()
            if time.monotonic() >= self._counters_due:
                self.refresh_counters()
                self._counters_due = time.monotonic() + self.counters_every_s
            self.board.changed.wait(self.every_s)
            self._stop.wait(MIN_GAP_S)

    def write(self) -> None:
        """One report of every component; a failure is logged once, until it works again."""
        self.board.changed.clear()
        reports = [Report(name, s.status, s.pid, s.restarts, s.last_exit, s.url, s.detail)
                   for name, s in self.board.snapshot().items()]
        try:
            if self.components is None:
                self.components = self.open_components()
            self.components.report_many(reports)
        except (MadError, OSError, ValueError) as err:
            self._fail(str(err))
        except Exception as err:  # a database error: SQLAlchemy's own classes
            self._fail(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        else:
            if self._failing:
                log.info("component health: reported to the state database again")
            self._failing = False

    def refresh_counters(self) -> None:
        """Read each set of counters onto the board; one that cannot be read keeps its last
        values (logged at debug level: the database may not have the tables yet)."""
        for name, read in self.read_counters.items():
            try:
                self.board.set_counters(name, read())
            except Exception as err:  # MadError, or a database error: SQLAlchemy's classes
                log.debug("counters %s: cannot be read (%s)", name, err)

    def _fail(self, why: str) -> None:
        if not self._failing:
            log.warning("component health: cannot report to the state database (%s); "
                        "retrying", why)
        self._failing = True

    def stop_thread(self) -> None:
        """Stop reporting (and reading counters) in the background."""
        self._stop.set()
        self.board.changed.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)

    def close(self) -> None:
        """Stop the thread, then write the final states (`stopped`, `failed`) once more."""
        self.stop_thread()
        self.write()
