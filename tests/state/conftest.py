"""State database tests run on SQLite and on a real PostgreSQL server (`state_url` in
tests/conftest.py)."""

from __future__ import annotations

from tests.pg_server import postgres_fixture

pg = postgres_fixture()
