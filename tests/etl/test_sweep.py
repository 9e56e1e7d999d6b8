"""DuckDB spill folders that killed processes left are swept at the start of a pass; a live
process's folder is never touched. Real processes: two children each open a database that
spills into a folder of its own; one is killed with SIGKILL, the other stays alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mad.etl.engines.duckdb.engine import DuckDBEngine
from mad.etl.engines.duckdb.spill import FRESH_S, NEW

CHILD = """
import sys, time
from mad.etl.engines.duckdb.engine import DuckDBEngine
engine = DuckDBEngine(memory_limit="256MB", temp_directory=sys.argv[1])
with engine._database() as con:
    print(con.execute("SELECT current_setting('temp_directory')").fetchone()[0], flush=True)
    time.sleep(600)
"""


def child(spill: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(spill)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_process_spill_folder_is_swept_and_a_live_one_is_kept(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    killed, dead_folder = child(spill)
    alive, live_folder = child(spill)
    try:
        (dead_folder / "spilled.tmp").write_bytes(b"\0" * 4096)  # what a spill leaves
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        assert dead_folder.is_dir() and live_folder.is_dir()
        unnamed = spill / f"{NEW}killed-before-naming"  # an instant after mkdtemp
        unnamed.mkdir()
        old = time.time() - 2 * FRESH_S
        os.utime(unnamed, (old, old))
        engine = DuckDBEngine(memory_limit="256MB", temp_directory=str(spill))
        assert engine.sweep() == 1
        assert not dead_folder.exists() and live_folder.is_dir() and not unnamed.exists()
        assert alive.poll() is None
        with engine._database():  # this process's own folder is locked too
            assert engine.sweep() == 0
    finally:
        alive.kill()
        alive.wait(30)
        killed.kill()
    engine.close()
