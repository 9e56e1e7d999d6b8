"""Restarting what dies: the restart budget of one component (`Restarts`) and the keeper of
the supervisor's child processes (`Keeper`).

A component that dies is restarted after a backoff that doubles from
`supervisor.restart_backoff_s` up to `max_backoff_s`; more than `max_restarts` restarts
within `restart_window_s` and `Restarts.next_delay` raises ServiceFailed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from mad.config import SupervisorSettings
from mad.errors import ServiceFailed
from mad.runtime.children import ChildProcess

log = logging.getLogger(__name__)


class Restarts:
    """The restart budget of one part: a doubling backoff, and at most `max_restarts`
    restarts within `restart_window_s` (then `next_delay` raises ServiceFailed)."""

    def __init__(self, name: str, cfg: SupervisorSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.cfg, self.clock = name, cfg, clock
        self.recent: deque[float] = deque()
        self.total = 0

    def next_delay(self, why: str) -> float:
        now = self.clock()
        while self.recent and now - self.recent[0] > self.cfg.restart_window_s:
            self.recent.popleft()
        if len(self.recent) >= self.cfg.max_restarts:
            raise ServiceFailed(
                f"the {self.name} {why} and was restarted {len(self.recent)} times in the last "
                f"{self.cfg.restart_window_s:.0f} s; giving up (see its log above)")
        delay = min(self.cfg.max_backoff_s,
                    self.cfg.restart_backoff_s * 2 ** len(self.recent))
        self.recent.append(now)
        self.total += 1
        return delay


def exit_reason(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Keeper:
    """Restarts children that died, each within its own budget (`Restarts`); once `stop`
    is set, a child that dies is left alone (it is being stopped, not crashing)."""

    def __init__(self, children: list[ChildProcess], cfg: SupervisorSettings,
                 clock: Callable[[], float] = time.monotonic,
                 stop: threading.Event | None = None) -> None:
        self.children = children
        self.clock = clock
        self.stop = stop or threading.Event()
        self.budgets = {c.name: Restarts(c.name, cfg, clock) for c in children}
        self.due: dict[str, float] = {}  # name -> when to start it again
        self.last_exit: dict[str, str] = {}
        self.failed: str | None = None  # the child that used up its budget

    def check(self) -> None:
        for child in self.children:
            if self.stop.is_set():
                return
            if not child.started or child.alive():
                continue
            when = self.due.get(child.name)
            if when is None:
                why = exit_reason(child.exitcode)
                self.last_exit[child.name] = why
                budget = self.budgets[child.name]
                try:
                    delay = budget.next_delay(why)
                except ServiceFailed:
                    self.failed = child.name
                    raise
                log.warning("%s %s; restarting it in %.1f s (restart %d)", child.name, why,
                            delay, budget.total)
                self.due[child.name] = self.clock() + delay
            elif self.clock() >= when:
                del self.due[child.name]
                child.start()

    def restarts(self, name: str) -> int:
        budget = self.budgets.get(name)
        return budget.total if budget is not None else 0
