"""Discovery of unread raw files, and how they are cut into runs."""

from __future__ import annotations

from pathlib import Path

from mad import lake
from mad.etl.discover import RawFile, batches, pending
from mad.stores.local import LocalStore

HOUR = 1_793_491_200.0  # 2026-11-01T00:00:00Z


def test_pending_lists_event_files_oldest_first_and_skips_done_and_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    late = lake.raw_key("log", "payments", HOUR + 3600)
    early = lake.raw_key("apm", "auth", HOUR)
    done = lake.raw_key("metric", "fraud", HOUR)
    for key, size in ((late, 30), (early, 10), (done, 5)):
        store.put(key, b"x" * size)
    store.put(lake.errors_key(HOUR), b"e")
    found = pending(store, done={done})
    assert [(f.key, f.bytes, f.hour) for f in found] == [(early, 10, HOUR), (late, 30, HOUR + 3600)]
    # a new file in an old partition is found too
    again = lake.raw_key("apm", "auth", HOUR)
    store.put(again, b"yy")
    assert again in {f.key for f in pending(store, done={done, early, late})}


def test_batches_respect_bytes_and_files() -> None:
    files = [RawFile(f"k{i}", size, 0.0) for i, size in enumerate([4, 4, 4, 10, 1, 1, 1])]
    cut = batches(files, max_bytes=8, max_files=2)
    assert [[f.key for f in run] for run in cut] == [["k0", "k1"], ["k2"], ["k3"], ["k4", "k5"],
                                                     ["k6"]]
    assert batches([], 8, 2) == []
