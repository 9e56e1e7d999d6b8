"""Start a real PostgreSQL 15 server for tests, on a free loopback port.

    with running_postgres() as pg:
        url = pg.create_database("mytest")   # postgresql+psycopg://postgres@127.0.0.1:PORT/mytest

or, in a test module, `pg = postgres_fixture()` at module level to get a module-scoped
fixture named `pg`. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` system user (setpriv); its folder is a fresh `tempfile.mkdtemp()` under /tmp
(pytest's base temp folder is not readable by that user), removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

BIN = Path(os.environ.get("MAD_PG_BIN", "/usr/lib/postgresql/15/bin"))
READY_SECONDS = 30.0


@dataclass(frozen=True)
class PgServer:
    """A running server: `url` is its `postgres` database; `create_database` adds another."""

    port: int
    folder: Path

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create an empty database `name` (a plain identifier) and return its URL."""
        import psycopg

        if not name.isidentifier():
            raise ValueError(f"database name must be an identifier, got {name!r}")
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def _dsn(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@contextmanager
def running_postgres() -> Iterator[PgServer]:
    """Initialise a cluster, start the server, yield it; stop it (SIGINT) and delete it."""
    if not (BIN / "postgres").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {BIN} (set MAD_PG_BIN)")
    folder = Path(tempfile.mkdtemp(prefix="mad-pg-", dir="/tmp"))
    as_root = os.geteuid() == 0
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, log_path = folder / "data", folder / "server.log"
    prefix = (
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        if as_root
        else []
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                *prefix,
                str(BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = free_port()
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [
                    *prefix,
                    str(BIN / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(folder),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = PgServer(port, folder)
        _wait_ready(server, proc, log_path)
        yield server
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def postgres_fixture(scope: str = "module") -> Callable[[], Iterator[PgServer]]:
    """A pytest fixture (assign it to a module-level name) that runs one server per scope."""

    def fixture() -> Iterator[PgServer]:
        with running_postgres() as server:
            yield server

    return pytest.fixture(scope=scope)(fixture)  # type: ignore[call-overload]


def _wait_ready(server: PgServer, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import psycopg

    deadline = time.monotonic() + READY_SECONDS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited early:\n{log_path.read_text(errors='replace')}")
        try:
            with psycopg.connect(server._dsn("postgres"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"postgres not ready after {READY_SECONDS:.0f} s:\n"
                    f"{log_path.read_text(errors='replace')}"
                ) from None
            time.sleep(0.05)
