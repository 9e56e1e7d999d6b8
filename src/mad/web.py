"""What every HTTP API of the pipeline applies before a request reaches it: an optional
bearer token and a `Host` allowlist (shared by the ingest API and the simulator's control
API).

- With a token set (`<api>.auth_token`, or `<api>.auth_token_file` so it need not sit in a
  settings file or the environment), every route but `/health` needs
  `Authorization: Bearer <token>`; a missing or wrong one is 401. Tokens are compared in
  constant time.
- `Host` must be one of `<api>.allowed_hosts` (names, optionally with `:port`); by default,
  an API bound to loopback accepts only loopback names (`127.0.0.1`, `localhost`, `[::1]`),
  which stops a web page from reaching it through DNS rebinding; bound elsewhere it accepts
  any name unless a list is set. Anything else is 421.
- Binding beyond loopback without a token logs a warning at start.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from mad.errors import ConfigError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
OPEN_PATHS = frozenset({"/health"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token: str | None, token_file: Path | None, setting: str) -> str | None:
    """The token of one API: from its file when one is named (first line), else as set."""
    if token_file is None:
        return token or None
    try:
        text = token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {setting}_file {token_file}: {err}") from None
    if not text:
        raise ConfigError(f"{setting}_file {token_file} is empty")
    return text.splitlines()[0]


class Guard:
    """ASGI middleware: the token and Host checks above, then the app."""

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: Sequence[str],
                 bind_host: str, name: str) -> None:
        self.app = app
        self.token = token.encode() if token else None
        hosts = list(allowed_hosts) or (list(LOOPBACK_NAMES) if is_loopback(bind_host) else [])
        self.allowed = {h.lower().strip("[]") for h in hosts}
        self.allow_any = not self.allowed or "*" in self.allowed
        if not is_loopback(bind_host) and self.token is None:
            log.warning("%s listens on %s without a token: anyone who can reach it can use "
                        "it (set an auth_token, or bind to 127.0.0.1 behind a proxy)",
                        name, bind_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not self.allow_any and not self._host_allowed(headers.get(b"host", b"")):
            await _answer(send, 421, "host_not_allowed",
                          "this Host is not in the API's allowed_hosts")
            return
        if self.token is not None and scope.get("path") not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(),
                                                                      self.token):
                await _answer(send, 401, "unauthorized",
                              "missing or wrong bearer token (Authorization: Bearer <token>)",
                              {"www-authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)

    def _host_allowed(self, raw: bytes) -> bool:
        host = raw.decode("latin-1").strip().lower()
        if host.startswith("["):  # [::1]:8010
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.allowed or host in self.allowed


async def _answer(send: Send, status: int, code: str, message: str,
                  extra: dict[str, str] | None = None) -> None:
    body = orjson.dumps({"error_code": code, "message": message})
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
