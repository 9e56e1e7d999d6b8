"""Spill folders of DuckDB databases: one per database, locked while it lives, swept once dead.

Every database the engine opens spills into a folder of its own (DuckDB names its spill files
the same in every process, so two databases sharing a folder overwrite each other's), under
`temp_directory`. A process killed mid-run leaves its folder, possibly gigabytes of spilled
data, and nothing else would ever delete it; so the folder is locked (`flock` on the folder
itself) for as long as its database is open, and `sweep` deletes every `run-*` folder whose
lock it can take: the process holding it died (the kernel drops a dead process's locks,
whatever its pid namespace). A folder is made as `.new-*`, locked, then renamed to
`run-{pid}-{random}` (the lock stays with it), so no `run-*` folder is ever unlocked while
its process lives. A `.new-*` folder is left only by a kill in that instant: empty, swept
once older than `FRESH_S`. (Folders of versions before the lock, `run-*` unlocked, are swept
as dead: stop such processes before upgrading.)
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "run-"
NEW = ".new-"
FRESH_S = 3600.0


@contextmanager
def spill_folder(parent: str) -> Iterator[str]:
    """A new folder under `parent`, locked until the block ends, then deleted."""
    os.makedirs(parent, exist_ok=True)
    made = tempfile.mkdtemp(prefix=NEW, dir=parent)
    fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY)
    folder = made
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        folder = os.path.join(parent, f"{PREFIX}{os.getpid()}-{Path(made).name[len(NEW):]}")
        os.rename(made, folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def sweep(parent: str, now: float | None = None) -> int:
    """Delete the spill folders under `parent` that no live database holds; returns how many."""
    root = Path(parent)
    if not root.is_dir():
        return 0
    now = time.time() if now is None else now
    swept = 0
    for left in sorted(root.glob(NEW + "*")):  # killed between making and naming a folder
        try:
            if now - left.stat().st_mtime > FRESH_S:
                shutil.rmtree(left, ignore_errors=True)
        except OSError:
            continue
    for folder in sorted(root.glob(PREFIX + "*")):
        try:
            if not folder.is_dir():
                continue
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:  # gone meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live database spills here
        try:
            shutil.rmtree(folder, ignore_errors=True)
            swept += 1
        finally:
            os.close(fd)
    if swept:
        log.warning("deleted %d DuckDB spill folder(s) that killed processes left in %s",
                    swept, parent)
    return swept
