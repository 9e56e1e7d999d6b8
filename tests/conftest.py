"""Shared fixtures: free loopback ports, and one generated 6-hour backfill for the session."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def six_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mad generate` over 6 simulated hours at the default rate (seed 7), faults included."""
    from mad.config import load_settings
    from mad.generate.backfill import run_backfill

    out = tmp_path_factory.mktemp("six_hours")
    settings = load_settings(env={}, overrides={"generate.duration": "6h"})
    run_backfill(settings.generate, out, progress=False)
    return out
