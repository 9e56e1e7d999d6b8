"""The status commands' data comes from what each stage committed: detection status is
current between checkpoints, and the texts count in the right number."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from mad.detect.pipeline import DetectRunner
from mad.detect.status import collect as detect_collect
from mad.detect.status import render as detect_render
from mad.ingest.status import render as ingest_render
from mad.words import plural
from tests.query.conftest import BuiltLake, copy_lake, lake_settings


def forget_detection(built: BuiltLake) -> None:
    """Make the copy a lake that detection has not scored yet."""
    con = sqlite3.connect(built.state_db)
    with con:
        for table in ("detect_series", "detect_meta", "detect_incidents", "detect_runs",
                      "detect_outbox", "detect_alerts_sent", "leases"):
            con.execute(f"DELETE FROM {table}")
    con.close()
    shutil.rmtree(built.lake / "md-anomalies")


def test_detect_status_shows_what_batches_committed_before_a_checkpoint(
    tmp_path: Path, pipeline_lake: BuiltLake,
) -> None:
    built = copy_lake(pipeline_lake, tmp_path / "copy")
    forget_detection(built)
    settings = lake_settings(built.root, **{"detect.checkpoint_s": 86400})
    before = detect_collect(settings)
    assert before["series"] == [] and before["scored_to"] is None
    runner = DetectRunner(settings)
    try:
        summary = runner.run_once()  # batches committed, no checkpoint yet
        con = sqlite3.connect(built.state_db)
        [(checkpointed,)] = con.execute("SELECT count(*) FROM detect_series").fetchall()
        con.close()
        assert checkpointed == 0 and summary.windows > 0
        during = detect_collect(settings)
        assert during["scored_to"] == summary.watermark.isoformat()  # type: ignore[union-attr]
        assert len(during["series"]) > 0 and during["last_run"]["status"] == "succeeded"
        assert min(s["lag_s"] for s in during["series"]) >= 60.0  # the newest wait
        assert "none yet" not in detect_render(during)
    finally:
        runner.close()  # the checkpoint: the same series, the same places
    after = detect_collect(settings)
    assert after["series"] == during["series"] and after["scored_to"] == during["scored_to"]
    assert after["series"] == detect_collect(pipeline_lake.settings)["series"]


def test_texts_count_in_the_right_number(pipeline_lake: BuiltLake) -> None:
    assert [plural(1, "incident"), plural(2, "incident"), plural(0, "anomaly"),
            plural(1, "anomaly")] == ["1 incident", "2 incidents", "0 anomalies", "1 anomaly"]
    status = detect_collect(pipeline_lake.settings)
    text = detect_render(status)
    assert "1 incidents" not in text and "1 anomalies" not in text
    assert f"incidents: {plural(status['open_incidents'], 'incident')} open" in text
    data: dict[str, Any] = {
        "stream": {"backend": "embedded", "disk_bytes": 10, "dropped_records": 1},
        "shards": [], "lake": "x", "state_error": None, "datasets": {}, "errors": {},
        "writer": {"pid": 1, "age_s": 1.0, "files": 1, "failing": {"lake": "full"},
                   "failures": {"lake": 1}, "unrecorded_files": 1}}
    text = ingest_render(data)
    assert "1 record dropped" in text and "1 file written" in text and "1 failure," in text
    assert "wait to be recorded in the state database: 1" in text
