"""The raw writer as a long-running service: in the foreground (`mad ingest writer`) or in a
child process of the supervisor (`writer_body`).

As a child it opens the stream as a reader, so the API (which owns it) and the writer, the
two busiest parts, do not share one interpreter lock.
"""

from __future__ import annotations

import logging
import signal
import threading

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


def writer_body(settings: Settings, stop: threading.Event) -> int:
    """The raw writer as a supervised child (`mad.runtime.children`): it writes until told
    to stop, then everything the stream still holds."""
    return run_writer(settings, stop=stop, drain=True, signals=())
