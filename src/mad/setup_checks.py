"""What `mad doctor` shares with the backends' own setup checks: the registry of checks by
(part, backend), and the helpers every check words its line with. Each backend's folder
registers its check here (`setup_check.py`); `mad.doctor` runs them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mad.config import Settings

TIMEOUT_S = 3.0
CheckFn = Callable[["Settings"], tuple[bool, str]]
BACKEND_CHECKS: dict[tuple[str, str], CheckFn] = {}  # (part, backend) -> its check


def backend_check(part: str, backend: str) -> Callable[[CheckFn], CheckFn]:
    """Register the check of one backend of a swap point (`stream`, `engine`); each backend's
    folder registers its own, so this module names none."""

    def register(fn: CheckFn) -> CheckFn:
        BACKEND_CHECKS[(part, backend)] = fn
        return fn

    return register


NOTE = "not created yet; "  # a detail holding this is a `note`: set up by the first run


def one_line(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def writable_folder(folder: Path) -> bool:
    """`folder` exists and can be written, or its nearest existing parent can."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)
