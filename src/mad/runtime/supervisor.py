"""The supervisor behind `mad up` and `mad ingest serve`: starts the parts, watches them,
stops them front to back.

The ingest API (and the live simulator) run in threads of this process, which owns the
stream; the raw writer runs in a child process of its own (`WriterProcess`); the lake loop
(ETL then detection) in a thread. The main thread waits for SIGTERM / Ctrl-C and stops the
parts front to back, so nothing upstream is still sending when a part downstream closes:
simulator first (its last batch is acknowledged), then the ingest API (stops accepting,
finishes requests in flight), then the raw writer (reads what is left, writes its buffers,
checkpoints), the lake loop, and the stream last.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from mad.config import Settings
from mad.ingest.wiring import open_configured_stream
from mad.runtime.lake_loop import TransformDetectLoop
from mad.runtime.servers import ServerThread
from mad.runtime.signals import stop_on_signals
from mad.runtime.writer import WriterProcess


@dataclass(frozen=True)
class Parts:
    """What to run beside the ingest API."""

    writer: bool = True  # the raw writer (child process)
    simulate_rate: float = 0.0  # events/s the live simulator posts to the API (0: none)
    lake_loop: bool = False  # ETL then detection, every etl.watch_interval_s


def supervise(settings: Settings, parts: Parts = Parts(),
              on_ready: Callable[[], None] | None = None,
              stop: threading.Event | None = None) -> None:
    """Run the ingest API on the configured stream with `parts` until SIGTERM / Ctrl-C (or
    `stop`); raises OSError when a part dies."""
    from mad.generate.live import LiveController, StartRequest
    from mad.generate.live import create_app as simulator_app
    from mad.ingest.api import create_app as ingest_app

    stop = stop or threading.Event()
    stream = open_configured_stream(settings)
    ing = settings.ingest
    api = ServerThread(ingest_app(settings, stream), ing.host, ing.port, "mad-ingest-api")
    writer = WriterProcess(settings) if parts.writer else None
    loop = TransformDetectLoop(settings) if parts.lake_loop else None
    simulator: ServerThread | None = None
    controller: LiveController | None = None
    try:
        if writer is not None:
            writer.start()
        api.start()
        if loop is not None:
            loop.start()
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
            while not stop.wait(0.5):
                if not api.alive():
                    raise OSError("the ingest API stopped unexpectedly")
                if writer is not None and not writer.alive():
                    raise OSError("the raw writer stopped unexpectedly (see its log above)")
    finally:
        if controller is not None:
            controller.close()
        if simulator is not None:
            simulator.stop()
        api.stop()
        if writer is not None:
            writer.stop()
        if loop is not None:
            loop.stop()
        stream.close()
        print("stopped: simulator, ingest API, raw writer, etl; stream closed", flush=True)
