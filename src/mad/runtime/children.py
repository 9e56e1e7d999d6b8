"""A part of the pipeline in a child process of the supervisor: started, stopped, restarted,
and never outliving its parent.

The child is spawned (a fresh interpreter: no state copied from the parent) and gets one end
of a pipe. It ignores SIGINT and SIGTERM: Ctrl-C and a SIGTERM to the process group reach it
together with its parent, and it must go on until the parent has stopped what feeds it (the
raw writer keeps writing until the API has stopped accepting). The parent stops it with a
message on the pipe; when the parent dies, even by SIGKILL, the kernel closes the parent's
end, the child's read ends with EOF, and the child finishes its work and exits. No signal
handler or multiprocessing lock is involved, so a child killed at any moment can never leave
the parent stuck.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from mad.config import Settings

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# body(settings, stop): runs until `stop` is set, then returns the exit code
Body = Callable[[Settings, threading.Event], int]


def child_main(body: Body, name: str, settings_data: dict[str, Any],
               control: Connection) -> None:
    """What a child process runs: `body` until the parent says stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    name_process(f"mad-{name.replace(' ', '-')}")
    settings = Settings.model_validate(settings_data)
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    stop = threading.Event()

    def watch_parent() -> None:
        try:
            control.recv_bytes()
        except (EOFError, OSError):
            log.warning("%s: the supervisor is gone; finishing, then exiting", name)
        stop.set()

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    raise SystemExit(body(settings, stop))


def name_process(name: str) -> None:
    """Show the part's name in `ps`, `top` and /proc (Linux; the kernel keeps 15 bytes)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w", encoding="ascii") as f:
        f.write(name[:15])


class ChildProcess:
    """One part in a child process; `start()` again after it died makes a new process."""

    def __init__(self, name: str, body: Body, settings: Settings) -> None:
        self.name = name
        self.body = body
        self._ctx = multiprocessing.get_context("spawn")
        self._settings = settings.model_dump(mode="json")
        self.process: BaseProcess | None = None
        self._control: Connection | None = None

    def start(self) -> None:
        child_end, parent_end = self._ctx.Pipe(duplex=False)
        self.process = self._ctx.Process(
            target=child_main, args=(self.body, self.name, self._settings, child_end),
            name=f"mad-{self.name.replace(' ', '-')}", daemon=False)
        self.process.start()
        child_end.close()  # the child holds it now: our end closing is its EOF
        self._control = parent_end

    def stop(self, timeout_s: float) -> int | None:
        """Ask the child to finish and exit; kill it after `timeout_s`. Its exit code."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send_bytes(b"stop")
            self._control.close()
            self._control = None
        if self.process is None:
            return None
        self.process.join(timeout_s)
        if self.process.is_alive():
            log.warning("%s did not stop in %.0f s; killing it", self.name, timeout_s)
            self.process.kill()
            self.process.join(10)
        return self.process.exitcode

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def started(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode if self.process is not None else None
