"""An ASGI app served by uvicorn in a thread of the supervisor's process, with bounds on
connections that uvicorn does not set by itself.

uvicorn closes a kept-alive connection after `timeout_keep_alive`, but a fresh connection
that sends nothing, or a request head that arrives one byte at a time (slowloris), is held
open for ever: neither uvicorn nor httptools has a timeout for the request head. Its
`limit_concurrency` answers 503 only once a request head is complete, so idle sockets still
hold a file descriptor each until the process has none left. So the app is served with
`GuardedHttpTools`, uvicorn's httptools protocol with:

- a request-head timeout: a head not complete `header_timeout_s` after the connection opened
  (or after the first byte of the next request on a kept-alive one) gets a 408 and is closed;
- a connection limit: a request whose head completes while `max_connections` connections
  are open gets a JSON 503 with `Retry-After` (paths in `unlimited_paths`, such as `/health`
  and `/metrics`, are still answered: they are cheap, and needed most under overload); past
  a hard limit (a quarter more) each new connection closes the oldest one still waiting for
  its request head (idle or slow: what a flood of idle sockets is made of), or, when none
  waits, is itself closed at once; so descriptors stay bounded and a new client such as a
  health probe still gets in;
- the limits fitted to the process's descriptor limit (raised up to the hard limit when it
  is too low, else the connection limit is lowered, with a warning).

An app declares its bounds as `app.state.serve_limits` (a `ServeLimits`); others get
`DEFAULT_LIMITS`. Events are reported to the limits' `count(event)` for the app's metrics.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mad.errors import ServiceFailed

log = logging.getLogger(__name__)

FD_RESERVE = 64
"""Descriptors kept for everything but client connections (stream files, databases)."""
OPENED, CLOSED, REFUSED, HEAD_TIMEOUT = "opened", "closed", "refused", "header_timeout"


class ServeLimits(Protocol):
    """How an app wants its connections bounded, and where connection events go."""

    @property
    def max_connections(self) -> int: ...

    @property
    def backlog(self) -> int: ...

    @property
    def keep_alive_s(self) -> int: ...

    @property
    def header_timeout_s(self) -> float: ...

    @property
    def unlimited_paths(self) -> frozenset[str]: ...

    def count(self, event: str) -> None:
        """One of OPENED, CLOSED, REFUSED, HEAD_TIMEOUT happened."""
        ...


@dataclass(frozen=True)
class DefaultLimits:
    """The bounds of an app that declares none."""

    max_connections: int = 1000
    backlog: int = 2048
    keep_alive_s: int = 5
    header_timeout_s: float = 10.0
    unlimited_paths: frozenset[str] = field(default_factory=lambda: frozenset({"/health"}))

    def count(self, event: str) -> None:
        return None


DEFAULT_LIMITS = DefaultLimits()


def limits_of(app: Any) -> ServeLimits:
    """The bounds `app` declares in `app.state.serve_limits`, else `DEFAULT_LIMITS`."""
    declared = getattr(getattr(app, "state", None), "serve_limits", None)
    return declared if declared is not None else DEFAULT_LIMITS


def fit_descriptors(max_connections: int) -> int:
    """The connection limit this process can hold: raises the soft descriptor limit up to
    the hard one if needed; lowers the connection limit (with a warning) if that is not
    enough."""
    wanted = hard_limit(max_connections) + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raise_to = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raise_to, hard))
            soft = raise_to
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    fitted = max(1, (soft - FD_RESERVE) * 4 // 5)
    log.warning("the process may open %d files; serving at most %d connections instead of "
                "%d (raise `ulimit -n` for more)", soft, fitted, max_connections)
    return fitted


def hard_limit(max_connections: int) -> int:
    """Connections past which a new one is closed at once."""
    return max_connections + max(4, max_connections // 4)


def _raw_response(status: int, reason: str, code: str, message: str,
                  retry_after: int | None = None) -> bytes:
    body = orjson.dumps({"error_code": code, "message": message})
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def guarded_protocol(limits: ServeLimits, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a request-head timeout and connection limits (see
    the module docstring); `max_connections` is the limit fitted to the descriptors."""
    hard = hard_limit(max_connections)
    busy_message = (f"the server holds its limit of {max_connections} connections; "
                    "retry after Retry-After seconds")
    busy_body = orjson.dumps({"error_code": "too_many_connections", "message": busy_message})
    head_timeout = _raw_response(408, "Request Timeout", "header_timeout",
                                 f"request head not received within {limits.header_timeout_s} s")
    over_hard = _raw_response(503, "Service Unavailable", "too_many_connections",
                              busy_message, retry_after=1)

    async def busy(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", b"1"),
            (b"connection", b"close"), (b"content-length", str(len(busy_body)).encode())]})
        await send({"type": "http.response.body", "body": busy_body})

    waiting: dict[GuardedHttpTools, None] = {}  # connections waiting for a head, oldest first

    class GuardedHttpTools(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _counted = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > hard:
                oldest = next(iter(waiting), None)
                if oldest is None:  # every other connection is busy with a request
                    limits.count(REFUSED)
                    transport.write(over_hard)
                    transport.close()
                    return
                oldest._close_waiting()
            self._counted = True
            limits.count(OPENED)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted:
                self._counted = False
                limits.count(CLOSED)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # the next request on a kept-alive connection gets its own bound

        def on_headers_complete(self) -> None:
            self._disarm()
            over = (len(self.connections) >= max_connections
                    or len(self.tasks) >= max_connections)
            path = self.url.split(b"?", 1)[0].decode("latin-1")
            if not over or path in limits.unlimited_paths:
                super().on_headers_complete()
                return
            limits.count(REFUSED)
            app, self.app = self.app, busy
            try:
                super().on_headers_complete()
            finally:
                self.app = app

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.header_timeout_s,
                                                        self._close_waiting)
                waiting[self] = None

        def _disarm(self) -> None:
            waiting.pop(self, None)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _close_waiting(self) -> None:
            """Its head did not come in time, or a new connection needs its place: 408."""
            self._disarm()
            if not self.transport.is_closing():
                limits.count(HEAD_TIMEOUT)
                self.transport.write(head_timeout)
                self.transport.close()

    return GuardedHttpTools


def server_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """The uvicorn settings for `app`, with the bounds it declares."""
    limits = limits_of(app)
    fitted = fit_descriptors(limits.max_connections)
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=10, http=guarded_protocol(limits, fitted),
                          backlog=limits.backlog, timeout_keep_alive=limits.keep_alive_s)


class ServerThread:
    """A uvicorn server in a thread (uvicorn leaves signals to the main thread there)."""

    def __init__(self, app: Any, host: str, port: int, name: str) -> None:
        self.server = uvicorn.Server(server_config(app, host, port))
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
        if self.thread.ident is not None:  # started (a failed start stops nothing)
            self.thread.join(timeout=30)
