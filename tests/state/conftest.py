"""State database fixtures: a fresh database on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.pg_server import PgServer, postgres_fixture

pg = postgres_fixture()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'state.db'}"
    server: PgServer = request.getfixturevalue("pg")
    return server.create_database(f"state_{uuid.uuid4().hex[:12]}")
