"""Before a run is recorded as done, what it published on a local lake is on disk: every
Parquet file it wrote was fsynced, so was each folder it created and the folder holding it.

Watched for real: `mad etl run` runs under `strace -f`, which logs every fsync / fdatasync
(with the path of its file descriptor) and every rename. A file fsynced in the stage and then
renamed into the lake (alone or with its folder) counts as fsynced at its final path: the
test replays the renames over the fsynced paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STRACE = shutil.which("strace")
_CALL = re.compile(r'^\d+\s+(fsync|fdatasync)\((\d+)<(.*)>\)\s+=\s+0')
_RENAME = re.compile(r'^\d+\s+rename(?:at2?)?\((?:[^,]*, )?"([^"]+)", (?:[^,]*, )?"([^"]+)"'
                     r'(?:, \w+)?\)\s+=\s+0')


def synced_paths(trace: str) -> set[str]:
    """The paths fsynced, moved along by every later rename of them or of a folder above."""
    synced: set[str] = set()
    for line in trace.splitlines():
        if (call := _CALL.match(line)) is not None:
            synced.add(call[3])
        elif (moved := _RENAME.match(line)) is not None:
            old, new = moved[1], moved[2]
            synced = {new + p[len(old):] if p == old or p.startswith(old + "/") else p
                      for p in synced}
    return synced


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")
def test_every_output_file_and_new_folder_is_fsynced_before_the_run_is_recorded(
    tmp_path: Path, raw_lake: tuple[Path, list[Path]],
) -> None:
    lake, files = raw_lake
    keep = {f for f in files if "hour=00" in str(f)}  # a small lake: one ingest hour
    for f in files:
        if f not in keep:
            f.unlink()
    trace = tmp_path / "trace.txt"
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"), "MAD_LAKE__URL": str(lake),
           "MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": "1GB"}
    done = subprocess.run(
        [str(STRACE), "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
         "-o", str(trace), sys.executable, "-m", "mad.cli", "etl", "run"],
        env=env, capture_output=True, text=True, timeout=600)
    if "Operation not permitted" in done.stderr and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip().splitlines()[0]}")
    assert done.returncode == 0, done.stderr[-3000:]
    synced = synced_paths(trace.read_text())

    written = sorted(str(p) for p in lake.rglob("*.parquet") if ".staging" not in p.parts)
    assert len(written) >= 6  # events, quarantine and aggregates
    assert [p for p in written if p not in synced] == []
    folders = {str(Path(p).parent) for p in written}
    new = folders | {str(Path(f).parent) for f in folders}  # date=, window=, dataset folders
    new |= {str(lake / d) for d in ("md-transformed-logs", "md-transformed-metrics",
                                    "md-transformed-apm", "md-quarantine", "md-aggregates")}
    parents = {str(Path(f).parent) for f in new}
    assert sorted(f for f in new | parents if f not in synced) == []
