"""One raw writer per consumer on a machine: a second waits for the first."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mad.config import load_settings
from mad.runtime.writer import one_writer_lock


def test_a_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path)})
    first = one_writer_lock(settings)
    got: list[float] = []

    def second() -> None:
        lock = one_writer_lock(settings, wait_s=30)
        got.append(time.monotonic())
        lock.close()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert not got  # still waiting
    released = time.monotonic()
    first.close()
    thread.join(10)
    assert got and got[0] >= released
    assert (tmp_path / "raw-writer.lock").exists()
