"""The supervisor behind `mad up` and `mad ingest serve`: starts the parts, watches them,
restarts what dies, stops them front to back.

The ingest API (and the live simulator) run in threads of this process, which owns the
stream. The raw writer, the ETL and detection each run in a child process of their own
(`mad.runtime.children`), which exits when this process dies.

Rules:
- a child that dies is restarted after a backoff that doubles from
  `supervisor.restart_backoff_s` up to `max_backoff_s`; more than `max_restarts` restarts
  of one part within `restart_window_s` and the whole service stops and exits non-zero.
  Nothing is lost by a restart: the stream holds every acknowledged record and the writer
  resumes from its checkpoint; the ETL and detection finish or undo what a killed pass left;
- a thread of this process that dies (the API) stops the service non-zero;
- SIGTERM / Ctrl-C (to this process or its whole process group) stops the parts front to
  back, so nothing upstream is still sending when a part downstream closes: simulator first
  (its last batch is acknowledged), then the ingest API (stops accepting, finishes requests
  in flight), then the raw writer (reads what is left, writes its buffers, checkpoints), the
  ETL and detection (after the pass in progress, or killed after `loop_stop_s`), and the
  stream last. If the writer could not finish (it was killed, or ran out of time), this
  process writes what is left itself before it says it stopped, or says how many records it
  left in the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mad.config import Settings, SupervisorSettings
from mad.errors import MadError, ServiceFailed
from mad.ingest.streams import Stream
from mad.ingest.wiring import open_configured_stream, stream_monitor
from mad.runtime.children import ChildProcess
from mad.runtime.passes import detect_body, etl_body
from mad.runtime.servers import ServerThread
from mad.runtime.signals import stop_on_signals
from mad.runtime.writer import run_writer, writer_body

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """What to run beside the ingest API."""

    writer: bool = True  # the raw writer (child process)
    simulate_rate: float = 0.0  # events/s the live simulator posts to the API (0: none)
    etl: bool = False  # an ETL pass every etl.watch_interval_s (child process)
    detect: bool = False  # a detection pass every detect.watch_interval_s (child process)


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


def supervise(settings: Settings, parts: Parts = Parts(),
              on_ready: Callable[[], None] | None = None,
              stop: threading.Event | None = None) -> None:
    """Run the ingest API on the configured stream with `parts` until SIGTERM / Ctrl-C (or
    `stop`); raises ServiceFailed when a part died for good."""
    from mad.generate.live import LiveController, StartRequest
    from mad.generate.live import create_app as simulator_app
    from mad.ingest.api import create_app as ingest_app

    stop = stop or threading.Event()
    stream = open_configured_stream(settings)
    ing = settings.ingest
    api = ServerThread(ingest_app(settings, stream), ing.host, ing.port, "mad-ingest-api")
    writer = ChildProcess("raw writer", writer_body, settings) if parts.writer else None
    children = [c for c in (
        writer,
        ChildProcess("etl", etl_body, settings) if parts.etl else None,
        ChildProcess("detection", detect_body, settings) if parts.detect else None,
    ) if c is not None]
    keeper = Keeper(children, settings.supervisor)
    simulator: ServerThread | None = None
    controller: LiveController | None = None
    try:
        if writer is not None:
            writer.start()
        api.start()
        for child in children:
            if not child.started:
                child.start()
        print(f"ingest API on {api.url}/v1/events -> {ing.stream.backend} stream"
              f"{' -> raw writer -> ' + settings.lake_url if writer else ''}", flush=True)
        if parts.simulate_rate > 0:
            sim_settings = settings.model_copy(deep=True)
            sim_settings.simulate.sink = f"{api.url}/v1/events"
            controller = LiveController(sim_settings)
            simulator = ServerThread(simulator_app(sim_settings, controller),
                                     settings.simulate.host, settings.simulate.port,
                                     "mad-simulator")
            simulator.start()
            controller.start(StartRequest(interval_seconds=1.0,
                                          logs_per_interval=max(1, round(parts.simulate_rate)),
                                          duration_seconds=0))
            print(f"simulator control API on {simulator.url} -> {parts.simulate_rate:g} "
                  "events/s", flush=True)
        if on_ready is not None:
            on_ready()
        with stop_on_signals(stop):
            while not stop.wait(0.2):
                if not api.alive():
                    raise ServiceFailed("the ingest API stopped unexpectedly")
                keeper.check()
    finally:
        if controller is not None:
            controller.close()
        if simulator is not None:
            simulator.stop()
        api.stop()
        left = _stop_children(settings, stream, writer, children)
        stream.close()
        names = [name for name, part in (("simulator", simulator), ("ingest API", api))
                 if part is not None] + [c.name for c in children]
        print(f"stopped: {', '.join(names)}; stream closed{left}", flush=True)


class Keeper:
    """Restarts children that died, each within its own budget (`Restarts`)."""

    def __init__(self, children: list[ChildProcess], cfg: SupervisorSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = children
        self.clock = clock
        self.budgets = {c.name: Restarts(c.name, cfg, clock) for c in children}
        self.due: dict[str, float] = {}  # name -> when to start it again

    def check(self) -> None:
        for child in self.children:
            if not child.started or child.alive():
                continue
            when = self.due.get(child.name)
            if when is None:
                why = exit_reason(child.exitcode)
                budget = self.budgets[child.name]
                delay = budget.next_delay(why)
                log.warning("%s %s; restarting it in %.1f s (restart %d)", child.name, why,
                            delay, budget.total)
                self.due[child.name] = self.clock() + delay
            elif self.clock() >= when:
                del self.due[child.name]
                child.start()


def _stop_children(settings: Settings, stream: Stream, writer: ChildProcess | None,
                   children: list[ChildProcess]) -> str:
    """The writer first (it writes what is left), then the others; returns a note for the
    "stopped" line when records are left in the stream."""
    cfg = settings.supervisor
    left = ""
    if writer is not None:
        code = writer.stop(cfg.writer_stop_s) if writer.started else None
        if code != 0:
            left = _drain_here(settings, stream, exit_reason(code))
    for child in children:
        if child is not writer and child.started:
            child.stop(cfg.loop_stop_s)
    return left


def _drain_here(settings: Settings, stream: Stream, why: str) -> str:
    """Write what the stream still holds from this process (the writer child could not);
    returns a note for the "stopped" line when records are left in the stream."""
    log.warning("raw writer %s; writing what the stream holds from the supervisor", why)
    try:
        run_writer(settings, stream=stream, stop=_set_event(), drain=True, signals=())
    except MadError as err:
        log.error("could not write what the stream holds: %s", err)
    try:
        lag = stream_monitor(settings, stream).lag(settings.writer.consumer)
    except MadError:
        return "; records may be left in the stream (written at the next start)"
    records = sum(v.records for v in lag.values())
    return f"; {records} records left in the stream (written at the next start)" if records \
        else ""


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event
