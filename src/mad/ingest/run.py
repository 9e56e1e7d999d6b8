"""Long-running ingest processes: the raw writer alone, or API + writer (+ simulator) together.

The API (and the simulator) run in threads of the main process, which owns the stream; the
raw writer runs in a child process of its own that opens the stream as a reader, so the two
busiest parts do not share one interpreter lock. The main thread waits for SIGTERM / Ctrl-C
and stops the parts front to back, so nothing upstream is still sending when a part
downstream closes: simulator first (its last batch is acknowledged), then the ingest API
(stops accepting, finishes requests in flight), then the raw writer (reads what is left,
writes its buffers, checkpoints), and the stream last.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn

from mad.config import Settings
from mad.ingest.streams import Stream
from mad.ingest.wiring import build_writer, open_configured_stream

log = logging.getLogger(__name__)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RETENTION_EVERY_S = 60.0  # a quiet stream still drops segments past retention_seconds


@contextmanager
def stop_on_signals(stop: threading.Event,
                    signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Set `stop` on these signals while inside (main thread only), then restore."""
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            stop.set()

        for sig in signals:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_writer(settings: Settings, stream: Stream | None = None,
               stop: threading.Event | None = None, drain: bool = False,
               signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> int:
    """Run the raw writer until `stop` is set or one of `signals` arrives.

    Opens the configured stream as a reader unless given one. With `drain`, everything in
    the stream is written before returning.
    """
    stop = stop or threading.Event()
    own = stream is None
    stream = stream or open_configured_stream(settings, role="reader")
    try:
        writer = build_writer(settings, stream)
        with stop_on_signals(stop, signals):
            log.info("raw writer: %s -> %s", writer.consumer, writer.store.url)
            writer.run(stop, drain=drain)
        s = writer.stats()
        log.info("raw writer stopped: %d files, %d bytes, committed %s",
                 s["files"], s["bytes"], s["committed"])
        return 0
    finally:
        if own:
            stream.close()


def _writer_process(settings_data: dict[str, Any], parent_stop: Any) -> None:
    """Child process body: the raw writer until the parent sets `parent_stop` (or SIGTERM).

    Ctrl-C reaches the whole process group; the child ignores it and waits for the parent,
    which stops it only after the API has stopped accepting. A watcher thread relays the
    parent's event, so no signal handler ever touches a multiprocessing lock.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()

    def relay() -> None:
        parent_stop.wait()
        stop.set()

    threading.Thread(target=relay, name="stop-relay", daemon=True).start()
    settings = Settings.model_validate(settings_data)
    raise SystemExit(run_writer(settings, stop=stop, drain=True, signals=(signal.SIGTERM,)))


class WriterProcess:
    """The raw writer in a child process, stopped by an event once producers have stopped."""

    def __init__(self, settings: Settings) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop_event = ctx.Event()
        self.process = ctx.Process(
            target=_writer_process, args=(settings.model_dump(mode="json"), self.stop_event),
            name="mad-raw-writer", daemon=False,
        )

    def start(self) -> None:
        self.process.start()

    def stop(self, timeout_s: float = 120.0) -> int | None:
        self.stop_event.set()
        self.process.join(timeout_s)
        if self.process.is_alive():
            log.warning("raw writer did not stop in %.0f s; terminating", timeout_s)
            self.process.terminate()
            self.process.join(10)
        return self.process.exitcode

    def alive(self) -> bool:
        return self.process.is_alive()


class ServerThread:
    """A uvicorn server in a thread (uvicorn leaves signals to the main thread there)."""

    def __init__(self, app: Any, host: str, port: int, name: str) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)
        self.url = f"http://{host}:{port}"

    def start(self, timeout_s: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"server {self.url} did not start (port in use?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class EtlThread:
    """`EtlRunner.run_once` every `etl.watch_interval_s` in a thread, until stopped; with
    `detect`, a detection pass (`DetectRunner.run_once`) over the new aggregates after each."""

    def __init__(self, settings: Settings, detect: bool = True) -> None:
        self.settings = settings
        self.detect = detect
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mad-etl", daemon=True)

    def _loop(self) -> None:
        from mad.detect.pipeline import DetectRunner
        from mad.etl.runner import EtlRunner

        runner = EtlRunner(self.settings)
        detector = DetectRunner(self.settings) if self.detect else None
        try:
            while not self.stop_event.wait(self.settings.etl.watch_interval_s):
                try:
                    print(f"etl: {runner.run_once().line()}", flush=True)
                except Exception as err:  # recorded in the state database; retried next pass
                    log.error("etl pass failed: %s", err)
                    continue
                if detector is None:
                    continue
                try:
                    print(detector.run_once(self.stop_event).line(), flush=True)
                except Exception as err:  # its state is saved per batch; the next pass resumes
                    log.error("detection pass failed: %s", err)
        finally:
            runner.close()
            if detector is not None:
                detector.close()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=600)


def run_stage(settings: Settings, with_writer: bool = True, simulate_rate: float = 0.0,
              with_etl: bool = False, on_ready: Callable[[], None] | None = None,
              stop: threading.Event | None = None) -> None:
    """Ingest API + raw writer on the configured stream; optionally the live simulator
    posting `simulate_rate` events/s to the API and the ETL every `etl.watch_interval_s`.
    Returns after SIGTERM / Ctrl-C (or `stop`)."""
    from mad.generate.live import StartRequest
    from mad.generate.live import create_app as simulator_app
    from mad.ingest.api import create_app as ingest_app

    stop = stop or threading.Event()
    stream = open_configured_stream(settings)
    ing = settings.ingest
    api = ServerThread(ingest_app(settings, stream), ing.host, ing.port, "mad-ingest-api")
    writer = WriterProcess(settings) if with_writer else None
    etl = EtlThread(settings) if with_etl else None
    simulator: ServerThread | None = None
    try:
        if writer is not None:
            writer.start()
        api.start()
        if etl is not None:
            etl.start()
        print(f"ingest API on {api.url}/v1/events -> {ing.stream.backend} stream"
              f"{' -> raw writer -> ' + settings.lake_url if with_writer else ''}", flush=True)
        if simulate_rate > 0:
            sim_settings = settings.model_copy(deep=True)
            sim_settings.simulate.sink = f"{api.url}/v1/events"
            app = simulator_app(sim_settings)
            simulator = ServerThread(app, settings.simulate.host, settings.simulate.port,
                                     "mad-simulator")
            simulator.start()
            app.state.start(StartRequest(interval_seconds=1.0,
                                         logs_per_interval=max(1, round(simulate_rate)),
                                         duration_seconds=0))
            print(f"simulator control API on {simulator.url} -> {simulate_rate:g} events/s",
                  flush=True)
        if on_ready is not None:
            on_ready()
        retention = getattr(stream, "apply_retention", None)  # embedded: age-based deletes
        next_retention = time.monotonic() + RETENTION_EVERY_S
        with stop_on_signals(stop):
            while not stop.wait(0.5):
                if retention is not None and time.monotonic() >= next_retention:
                    retention()
                    next_retention = time.monotonic() + RETENTION_EVERY_S
                if not api.thread.is_alive():
                    raise OSError("the ingest API stopped unexpectedly")
                if writer is not None and not writer.alive():
                    raise OSError("the raw writer stopped unexpectedly (see its log above)")
    finally:
        if simulator is not None:
            simulator.stop()
        api.stop()
        if writer is not None:
            writer.stop()
        if etl is not None:
            etl.stop()
        stream.close()
        print("stopped: simulator, ingest API, raw writer, etl; stream closed", flush=True)
