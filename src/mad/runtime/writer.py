"""The raw writer as a long-running service: in the foreground (`mad ingest writer`) or in a
child process of the supervisor (`writer_body`).

As a child it opens the stream as a reader, so the API (which owns it) and the writer, the
two busiest parts, do not share one interpreter lock.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
import time
from pathlib import Path
from typing import IO

from mad.config import Settings
from mad.errors import TransientError
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
    lock = one_writer_lock(settings)
    own = stream is None
    try:
        stream = stream or open_configured_stream(settings, role="reader")
    except BaseException:
        lock.close()
        raise
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
        lock.close()


def one_writer_lock(settings: Settings, wait_s: float = 600.0) -> IO[str]:
    """Hold `{data_dir}/{consumer}.lock` while writing: one raw writer per consumer and data
    folder (its health file is there too). A second one (a writer restarted while the one of
    a killed supervisor is still writing what the stream held) waits for the first to finish
    instead of writing the same records again. Several writers sharing a Kinesis stream
    (shard leases in the state database) each run from a data folder of their own."""
    path = Path(settings.data_dir) / f"{settings.writer.consumer}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - the caller closes it
    deadline = time.monotonic() + wait_s
    waited = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                raise TransientError(f"another raw writer holds {path} for over "
                                     f"{wait_s:.0f} s") from None
            if not waited:
                log.warning("raw writer: another writer holds %s; waiting for it", path)
                waited = True
            time.sleep(0.2)


def writer_body(settings: Settings, stop: threading.Event) -> int:
    """The raw writer as a supervised child (`mad.runtime.children`): it writes until told
    to stop, then everything the stream still holds."""
    return run_writer(settings, stop=stop, drain=True, signals=())
