"""Opening the state database: several processes at once on a fresh one, and a file that is
not a database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mad.errors import TerminalError
from mad.state import open_state

OPEN = ("import sys\nfrom mad.state import open_state\n"
        "open_state(sys.argv[1]).dispose()\nprint('ok')\n")


@pytest.mark.parametrize("round_", range(3))
def test_processes_opening_a_fresh_database_at_once_all_succeed(state_url: str,
                                                                round_: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, state_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    state_url_tables = open_state(state_url)
    from sqlalchemy import inspect

    assert "raw_files" in inspect(state_url_tables).get_table_names()
    state_url_tables.dispose()


def test_a_corrupt_database_file_is_one_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(TerminalError, match="unusable") as err:
        open_state(f"sqlite:///{db}")
    assert "\n" not in str(err.value)


def test_looking_creates_nothing(tmp_path: Path) -> None:
    from mad.errors import ConfigError

    db = tmp_path / "typo" / "state.db"
    with pytest.raises(ConfigError, match="no state database"):
        open_state(f"sqlite:///{db}", create=False)
    assert not db.parent.exists()
    open_state(f"sqlite:///{db}").dispose()  # the stage that writes creates it
    open_state(f"sqlite:///{db}", create=False).dispose()
