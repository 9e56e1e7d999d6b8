"""The raw writer as a long-running service: in the foreground (`mad ingest writer`) or in a
child process of the supervisor (`WriterProcess`).

The child opens the stream as a reader, so the API (which owns it) and the writer, the two
busiest parts, do not share one interpreter lock.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from typing import Any

from mad.config import Settings
from mad.ingest.streams import Stream
from mad.ingest.wiring import build_writer, open_configured_stream
from mad.runtime.signals import STOP_SIGNALS, stop_on_signals

log = logging.getLogger(__name__)


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
