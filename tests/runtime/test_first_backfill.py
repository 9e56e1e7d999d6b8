"""The first-start backfill of `mad up`, with real processes: cut short by SIGTERM it resumes
at the next start with the same event ids (nothing lost, nothing twice in the lake), its
labels are written, the lake and the aggregates get its events, and a start after it is done
does not post it again."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from mad.config import load_settings
from mad.state import Components, open_state
from mad.state.components import Backfills
from mad.state.raw_files import RawFileLedger
from tests.runtime.helpers import (
    Up,
    aggregate_count,
    mad_processes,
    raw_ids,
    transformed_ids,
    up_env,
    wait_for,
)

pytestmark = pytest.mark.slow

ARGS = ["--rate", "0", "--no-dashboard"]


def test_the_backfill_resumes_after_a_stop_and_is_made_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = up_env(data, MAD_SUPERVISOR__BACKFILL_HOURS="1", MAD_SUPERVISOR__BACKFILL_RATE="30")
    settings = load_settings(env={}, overrides={"data_dir": str(data)})
    marks = Backfills(open_state(settings.state_url))
    log = (tmp_path / "up.log").open("wb")

    def mark_chunks() -> int:
        mark = marks.get("first-start")
        return mark.chunks_done if mark is not None else 0

    up = Up(env, ARGS, log)  # 1: stopped while it posts
    try:
        wait_for(lambda: mark_chunks() >= 5, 120, "some chunks posted")
        assert up.sigterm_group() == 0
        cut = marks.get("first-start")
        assert cut is not None and not cut.done and cut.chunks_done < 61
        row = next(r for r in Components(marks.engine).all() if r["name"] == "backfill")
        assert (row["status"], row["last_exit"]) == ("stopped", "cut short")

        up = Up(env, ARGS, log)  # 2: resumes, finishes; the simulator would start now
        wait_for(lambda: up.component("backfill")["last_exit"] == "finished", 180,
                 "the backfill to finish")
        done = marks.get("first-start")
        assert done is not None and done.done
        assert (done.start, done.end, done.rate) == (cut.start, cut.end, cut.rate)
        labels = orjson.loads((data / "backfill" / "labels.json").read_bytes())
        assert labels["lines"] == done.lines and len(labels["incidents"]) == done.incidents >= 1
        assert labels["start"] == done.start.strftime("%Y-%m-%dT%H:%M:%SZ")

        wait_for(lambda: len(raw_ids(data / "lake")) >= labels["valid_events"], 60,
                 "the raw writer")
        accepted = raw_ids(data / "lake")
        assert len(accepted) == labels["valid_events"]  # every valid event, once
        wait_for(lambda: _transformed(data) >= accepted, 180, "the ETL over the backfill")
        wait_for(lambda: aggregate_count(data / "lake") > 0, 60, "aggregates")
        assert up.sigterm_group() == 0

        ledger = RawFileLedger(open_state(settings.state_url), settings.writer.consumer)
        records = _records(ledger)
        up = Up(env, ARGS, log)  # 3: made before, not posted again
        wait_for(lambda: up.health()[0] == 200, 60, "everything running")
        backfill = up.component("backfill")
        assert backfill["status"] == "stopped" and backfill["detail"].startswith("made before")
        assert up.sigterm_group() == 0
    except BaseException:
        up.kill_all()
        raise
    finally:
        log.close()
    again = marks.get("first-start")
    assert again is not None and again.finished_at == done.finished_at
    assert _records(ledger) == records
    rows, ids = transformed_ids(data / "lake") or (0, set())
    assert rows == len(ids) and accepted <= ids
    assert not mad_processes(data)


def _transformed(data: Path) -> set[str]:
    found = transformed_ids(data / "lake")
    return found[1] if found is not None else set()


def _records(ledger: RawFileLedger) -> int:
    return sum(d["records"] for d in ledger.summary()["datasets"].values())
