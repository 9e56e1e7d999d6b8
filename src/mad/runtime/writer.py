"""The raw writer as a long-running service: in the foreground (`mad ingest writer`) or in a
child process of the supervisor (`WriterProcess`).

The child opens the stream as a reader, so the API (which owns it) and the writer, the two
busiest parts, do not share one interpreter lock.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from mad.config import Settings
from mad.ingest.streams import Stream
from mad.ingest.wiring import build_writer, open_configured_stream
from mad.runtime.signals import STOP_SIGNALS, stop_on_signals

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def _writer_process(settings_data: dict[str, Any], control: Connection) -> None:
    """Child process body: the raw writer until its parent says stop, or dies.

    The child ignores SIGINT and SIGTERM: Ctrl-C and a SIGTERM to the process group reach it
    together with its parent, and it must keep writing until the parent has stopped the API,
    so nothing acknowledged is left behind. The parent stops it by a message on `control`;
    when the parent dies (even by SIGKILL) the pipe's other end closes, the read below ends
    with EOF, and the child drains what the stream holds and exits: it never outlives its
    parent. No signal handler or multiprocessing lock is involved, so a child killed at any
    moment cannot leave the parent stuck.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    stop = threading.Event()

    def watch_parent() -> None:
        try:
            control.recv_bytes()
        except (EOFError, OSError):
            log.warning("raw writer: the supervisor is gone; writing what the stream holds, "
                        "then exiting")
        stop.set()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    settings = Settings.model_validate(settings_data)
    raise SystemExit(run_writer(settings, stop=stop, drain=True, signals=()))


class WriterProcess:
    """The raw writer in a child process; `stop()` once producers have stopped. It can be
    started again after it died (`start()` makes a new process)."""

    def __init__(self, settings: Settings) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._settings = settings.model_dump(mode="json")
        self.process: BaseProcess | None = None
        self._control: Connection | None = None

    def start(self) -> None:
        child_end, parent_end = self._ctx.Pipe(duplex=False)
        self.process = self._ctx.Process(target=_writer_process,
                                         args=(self._settings, child_end),
                                         name="mad-raw-writer", daemon=False)
        self.process.start()
        child_end.close()  # the child holds it now: our end closing is its EOF
        self._control = parent_end

    def stop(self, timeout_s: float = 120.0) -> int | None:
        """Ask the child to write what is left and exit; kill it after `timeout_s`."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send_bytes(b"stop")
            self._control.close()
            self._control = None
        if self.process is None:
            return None
        self.process.join(timeout_s)
        if self.process.is_alive():
            log.warning("raw writer did not stop in %.0f s; killing it", timeout_s)
            self.process.kill()
            self.process.join(10)
        return self.process.exitcode

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode if self.process is not None else None
