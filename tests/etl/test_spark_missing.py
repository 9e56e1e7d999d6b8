"""`mad etl run --engine spark` on a machine without PySpark: a one-line error that says how
to install it, exit code 2, no traceback (a real process, with PySpark hidden from it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HIDE_PYSPARK = (
    "import sys; sys.modules['pyspark'] = None; "  # what an interpreter without it sees
    "from mad.cli import main; sys.argv = ['mad'] + sys.argv[1:]; main()"
)


def test_spark_without_pyspark_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_PYSPARK, "etl", "run", "--engine", "spark",
         "--lake", str(tmp_path / "lake")],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "MAD_DATA_DIR": str(tmp_path)}, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "PySpark" in lines[0] and "make spark" in lines[0]
