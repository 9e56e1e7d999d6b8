"""An ASGI app served by uvicorn in a thread of the supervisor's process."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from mad.errors import ServiceFailed


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
                raise ServiceFailed(f"{self.thread.name} could not listen on {self.url} "
                                    "(is the port in use? set another one in the settings)")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
