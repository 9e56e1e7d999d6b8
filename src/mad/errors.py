"""One root exception for everything a user can cause, split by what to do about it.

`MadError` messages are shown to users as one line, without a traceback. `TerminalError`
(bad input: reject or quarantine, do not retry) and `TransientError` (retry with backoff) are
marker mixins, so a backend error can say both what failed and how to treat it.
"""

from __future__ import annotations


class MadError(Exception):
    """An error a user can act on; the CLI prints `str(err)` on one line and exits non-zero."""

    exit_code = 2


class TerminalError(MadError):
    """The input is wrong and retrying will not help."""


class TransientError(MadError):
    """A dependency failed in a way that may pass; retry with backoff."""

    exit_code = 3


class ServiceFailed(MadError):
    """A part of a long-running service died and could not be kept running (or never
    started, e.g. its port is taken); the service stops with this one line."""

    exit_code = 1


class ConfigError(TerminalError):
    """A setting has a bad value; the message names the key and the allowed values."""
