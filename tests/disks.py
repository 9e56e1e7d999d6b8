"""A real size-limited folder (a tmpfs) for disk-full tests, shared by the suites that need
one: `small_disk` (a fixture; import it into a conftest) and `fill_disk`."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SmallDisk = Callable[[int], Path]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """`small_disk(bytes)`: a fresh folder on a tmpfs of that size, unmounted after the test.
    Skips (saying why) where mounting is not possible: it needs root and mount rights."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a size-limited folder needs root (mount -t tmpfs); not root here")
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill_disk(folder: Path) -> Path:
    """Write a file in `folder` until its file system is full; returns the file (delete it to
    free the space again)."""
    filler = folder / "filler"
    block = b"\0" * 4096
    with filler.open("wb", buffering=0) as f:
        for _ in range(1 << 20):  # bounded: at most 4 GiB
            try:
                f.write(block)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                return filler
    raise AssertionError(f"{folder} did not fill up")
