"""The supervisor behind `mad up` and `mad ingest serve`: starts the parts, watches them,
restarts what dies, reports their health, stops them in order.

The ingest API, the live simulator, the first-start backfill and the status endpoint run in
threads of this process, which owns the stream. The raw writer, the ETL, detection and the
dashboard each run in a child process of their own (`mad.runtime.children`), which exits
when this process dies.

Rules:
- a child that dies is restarted after a backoff that doubles from
  `supervisor.restart_backoff_s` up to `max_backoff_s` (`mad.runtime.keeper`); more than
  `max_restarts` restarts of one part within `restart_window_s` and the whole service stops
  and exits non-zero. Nothing is lost by a restart: the stream holds every acknowledged
  record and the writer resumes from its checkpoint; the ETL and detection finish or undo
  what a killed pass left. A live simulator run that dies is restarted the same way;
- a thread of this process that dies (the API, the status endpoint) stops the service
  non-zero;
- every component's state is on the `Board`, served at `GET /health` of the status
  endpoint and copied into `runtime_components` (`mad.runtime.health`);
- on a first start, the backfill (`mad.runtime.backfill`) is posted through the API before
  the live simulator starts;
- SIGTERM / Ctrl-C (to this process or its whole process group) stops the parts in order,
  so nothing upstream is still sending when a part downstream closes: the dashboard first
  (it only reads; its exit then is never counted as a crash), the simulator and the backfill
  (their last batch is acknowledged), the ingest API (stops accepting, finishes requests in
  flight), the raw writer (reads what is left, writes its buffers, checkpoints), the ETL and
  detection (after the pass in progress, or killed after `loop_stop_s`), and the stream
  last. If the writer could not finish (it was killed, or ran out of time), this process
  writes what is left itself before it says it stopped, or says how many records it left in
  the stream.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from mad.config import Settings
from mad.errors import MadError, ServiceFailed
from mad.ingest.streams import Stream
from mad.ingest.wiring import open_configured_stream, stream_monitor
from mad.runtime.backfill import BackfillThread, FirstBackfill
from mad.runtime.children import Body, ChildProcess
from mad.runtime.health import Board, Reporter
from mad.runtime.hot import HotStoreProbe
from mad.runtime.keeper import Keeper, Restarts, exit_reason
from mad.runtime.passes import detect_body, etl_body
from mad.runtime.servers import ServerThread
from mad.runtime.signals import stop_on_signals
from mad.runtime.writer import run_writer, writer_body
from mad.state import open_state
from mad.state.components import Backfills, Components
from mad.web import read_token

if TYPE_CHECKING:
    from mad.runtime.simulator import LiveSimulator

log = logging.getLogger(__name__)

DASHBOARD_STOP_S = 10.0
BACKFILL_STOP_S = 60.0

__all__ = ["Keeper", "Parts", "Restarts", "exit_reason", "supervise"]


@dataclass(frozen=True)
class Parts:
    """What to run beside the ingest API."""

    writer: bool = True  # the raw writer (child process)
    simulate_rate: float = 0.0  # events/s the live simulator posts to the API (0: none)
    etl: bool = False  # an ETL pass every etl.watch_interval_s (child process)
    detect: bool = False  # a detection pass every detect.watch_interval_s (child process)
    dashboard: bool = False  # the Streamlit dashboard on dashboard.host:port (child process)
    backfill_hours: float = 0.0  # posted once, on the first start, before going live
    status: bool = False  # GET /health and /metrics on supervisor.status_host:status_port


def supervise(settings: Settings, parts: Parts = Parts(),
              on_ready: Callable[[], None] | None = None,
              stop: threading.Event | None = None) -> None:
    """Run the ingest API on the configured stream with `parts` until SIGTERM / Ctrl-C (or
    `stop`); raises ServiceFailed when a part died for good."""
    stop = stop or threading.Event()
    with stop_on_signals(stop):
        service = Service(settings, parts, stop)
        try:
            service.start()
            if on_ready is not None:
                on_ready()
            while not stop.wait(0.2):
                service.tick()
        finally:
            service.stop()


class Service:
    """Every part of one `supervise` call, and the order in which they start and stop."""

    def __init__(self, settings: Settings, parts: Parts, stop: threading.Event) -> None:
        from mad.ingest.api import create_app as ingest_app

        self.settings, self.parts, self.stop_event = settings, parts, stop
        dashboard_body = _dashboard_body() if parts.dashboard else None
        self.board = Board()
        self.pid = os.getpid()
        self.state = StateOnDemand(settings.state_url)
        self.hot_probe = HotStoreProbe(settings, self.board)
        self.reporter = Reporter(self.board, lambda: Components(self.state.engine()),
                                 counters={"quality": lambda: quality_counters(settings),
                                           "store": self.hot_probe.read})
        ing = settings.ingest
        self.token = read_token(ing.auth_token, ing.auth_token_file, "ingest.auth_token")
        self.stream: Stream = open_configured_stream(settings)
        self.api = ServerThread(ingest_app(settings, self.stream), ing.host, ing.port,
                                "mad-ingest-api")
        self.writer = ChildProcess("raw writer", writer_body, settings) if parts.writer \
            else None
        self.dashboard = ChildProcess("dashboard", dashboard_body, settings) \
            if dashboard_body is not None else None
        self.dashboard_pid: int | None = None  # the dashboard process seen answering
        self.children = [c for c in (
            self.writer,
            ChildProcess("etl", etl_body, settings) if parts.etl else None,
            ChildProcess("detection", detect_body, settings) if parts.detect else None,
            self.dashboard,
        ) if c is not None]
        self.keeper = Keeper(self.children, settings.supervisor, stop=stop)
        self.status_server: ServerThread | None = None
        self.simulator: LiveSimulator | None = None
        self.backfill: BackfillThread | None = None
        self._initial_board()

    # -- starting -------------------------------------------------------------------------

    def _initial_board(self) -> None:
        b, p = self.board, self.parts
        if p.simulate_rate > 0:
            b.set("simulator", "starting")
        else:
            b.set("simulator", "stopped", required=False, detail="off (--rate 0)")
        b.set("ingest API", "starting", pid=self.pid, url=self.api.url)
        b.set("stream", "running", pid=self.pid, detail=self.settings.ingest.stream.backend)
        for name in ("raw writer", "etl", "detection", "dashboard"):
            if not any(c.name == name for c in self.children):
                b.set(name, "stopped", required=False, detail="off")
        if p.backfill_hours > 0:
            b.set("backfill", "starting", pid=self.pid,
                  detail=f"{p.backfill_hours:g} h, once, before going live")
        else:
            b.set("backfill", "stopped", required=False,
                  detail="off (supervisor.backfill_hours is 0)")
        if self.dashboard is not None:
            cfg = self.settings.dashboard
            b.set("dashboard", "starting", url=f"http://{cfg.host}:{cfg.port}")

    def start(self) -> None:
        self.reporter.start()
        if self.writer is not None:
            self.writer.start()
        self.api.start()
        self.board.set("ingest API", "running")
        for child in self.children:
            if not child.started:
                child.start()
        ing, sup = self.settings.ingest, self.settings.supervisor
        print(f"ingest API on {self.api.url}/v1/events -> {ing.stream.backend} stream"
              f"{' -> raw writer -> ' + self.settings.lake_url if self.writer else ''}",
              flush=True)
        if self.parts.status:
            from mad.query.api import create_app as read_api
            from mad.runtime.status import create_app as status_app

            self.status_server = ServerThread(status_app(self.board, sup.status_host,
                                                         read_api(self.settings)),
                                              sup.status_host, sup.status_port, "mad-status")
            self.status_server.start()
        if self.parts.simulate_rate > 0:
            from mad.runtime.simulator import LiveSimulator

            self.simulator = LiveSimulator(self.settings, self.parts.simulate_rate,
                                           f"{self.api.url}/v1/events", self.board)
            self.simulator.start_api(waits_for_backfill=self.parts.backfill_hours > 0)
        if self.parts.backfill_hours > 0:
            job = FirstBackfill(self.settings, self.parts.backfill_hours,
                                f"{self.api.url}/v1/events", self.token,
                                lambda: Backfills(self.state.engine()))
            self.backfill = BackfillThread(job, self.board, self.settings, self.stop_event)
            self.backfill.start()
        if self.parts.status:
            print(banner(self.settings, self.parts, self), flush=True)
        self.tick()

    # -- watching -------------------------------------------------------------------------

    def tick(self) -> None:
        """One look at every part: restart what died, start what is due, report."""
        if not self.api.alive():
            self.board.set("ingest API", "failed", last_exit="stopped unexpectedly")
            raise ServiceFailed("the ingest API stopped unexpectedly")
        if self.status_server is not None and not self.status_server.alive():
            raise ServiceFailed("the status endpoint stopped unexpectedly")
        try:
            self.keeper.check()
        except ServiceFailed as err:
            if self.keeper.failed:
                self.board.set(self.keeper.failed, "failed", detail=str(err),
                               last_exit=self.keeper.last_exit.get(self.keeper.failed))
            raise
        if self.simulator is not None:
            self.simulator.watch(may_run=self.backfill is None or self.backfill.finished())
        for child in self.children:
            self._observe(child)

    def _observe(self, child: ChildProcess) -> None:
        name = child.name
        restarts = self.keeper.restarts(name)
        last = self.keeper.last_exit.get(name)
        if name in self.keeper.due or (child.started and not child.alive()):
            self.board.set(name, "restarting", pid=None, restarts=restarts, last_exit=last)
        elif child is self.dashboard and self.dashboard_pid != child.pid:
            cfg = self.settings.dashboard  # running once it answers on its port
            if _answers(cfg.host, cfg.port):
                self.dashboard_pid = child.pid
            self.board.set(name, "running" if self.dashboard_pid == child.pid else "starting",
                           pid=child.pid, restarts=restarts, last_exit=last)
        elif child.alive():
            self.board.set(name, "running", pid=child.pid, restarts=restarts, last_exit=last)
        else:
            self.board.set(name, "starting", pid=None, restarts=restarts, last_exit=last)

    # -- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Everything, in order (see the module docstring); then the final report."""
        self.stop_event.set()
        cfg = self.settings.supervisor
        stopped: list[str] = []
        if self.dashboard is not None and self.dashboard.started:
            self.dashboard.stop(min(DASHBOARD_STOP_S, cfg.loop_stop_s))
            self._stopped("dashboard", stopped)
        if self.simulator is not None:
            self.simulator.stop()
            self._stopped("simulator", stopped)
        if self.backfill is not None:
            self.backfill.join(BACKFILL_STOP_S)
            stopped.append("backfill")
        self.api.stop()
        self._stopped("ingest API", stopped)
        left = _stop_children(self.settings, self.stream, self.writer,
                              [c for c in self.children if c is not self.dashboard])
        for child in self.children:
            if child is not self.dashboard:
                self._stopped(child.name, stopped)
        self.stream.close()
        self._stopped("stream", stopped, show=False)
        if self.status_server is not None:
            self.status_server.stop()
        self.reporter.stop_thread()
        self._stopped("hot store", stopped, show=False)
        self.reporter.close()
        self.hot_probe.close()
        print(f"stopped: {', '.join(stopped)}; stream closed{left}", flush=True)

    def _stopped(self, name: str, stopped: list[str], show: bool = True) -> None:
        state = self.board.get(name)
        if state is not None and state.status != "failed":
            self.board.set(name, "stopped", pid=None)
        if show:
            stopped.append(name)


class StateOnDemand:
    """The state database, opened at first use and again after a failure, so a database
    that is down when the service starts delays the reports, never the service."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = open_state(self.url)
            return self._engine


def quality_counters(settings: Settings) -> dict[str, object]:
    """The quality counters for `/metrics` (`mad.query.quality.counters`, imported when
    first read)."""
    from mad.query.quality import counters

    return counters(settings)


def _dashboard_body() -> Body:
    try:
        from mad.dashboard.server import dashboard_body
    except ImportError as err:
        raise MadError(f"the dashboard cannot be loaded ({err}); run with --no-dashboard") \
            from None
    return dashboard_body


def _answers(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port (the dashboard is up)."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def banner(settings: Settings, parts: Parts, service: Service) -> str:
    """What `mad up` prints once started: where each part answers, and what to do next."""
    sup = settings.supervisor
    rows: list[tuple[str, str]] = []
    if service.dashboard is not None:
        rows.append(("dashboard", f"http://{settings.dashboard.host}:{settings.dashboard.port}"))
    rows.append(("ingest API", f"{service.api.url}/v1/events"))
    if service.simulator is not None:
        rows.append(("simulator control", f"{service.simulator.url}/api/status"))
    rows.append(("health", f"http://{sup.status_host}:{sup.status_port}/health"))
    rows.append(("read API", f"http://{sup.status_host}:{sup.status_port}/v1/incidents"))
    lines = ["mad up: every part is supervised; Ctrl-C stops them all cleanly"]
    lines += [f"  {name:<18} {url}" for name, url in rows]
    if service.backfill is not None:
        lines.append(f"backfill: {parts.backfill_hours:g} h of labelled traffic (with "
                     "incidents), posted through the ingest API on the first start only "
                     f"(labels in {settings.data_dir / 'backfill' / 'labels.json'}); the live "
                     "simulator starts after it")
    lines.append("next:")
    if service.dashboard is not None:
        lines.append(f"  open the dashboard: {rows[0][1]}")
    lines += [
        "  post your own events: mad ingest post FILE (JSONL or JSONL.gz)",
        "  follow them: mad ingest status, mad etl status, mad detect status",
        f"  the ETL runs every {settings.etl.watch_interval_s:g} s and detection every "
        f"{settings.detect.watch_interval_s:g} s after it; alerts go to "
        f"{settings.alerts_path}",
    ]
    return "\n".join(lines)


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
