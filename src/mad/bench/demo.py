"""A demo lake built by the pipeline itself, for screenshots, the dashboard benchmark and
the tests of the read side: a labelled backfill (`settings.generate`), split into a raw lake
as the ingest path files it (each file recorded in the raw files ledger, as the raw writer
records it), one ETL pass and one detection pass."""

from __future__ import annotations

from pathlib import Path

from mad.config import Settings


def record_raw_files(settings: Settings, files: list[Path]) -> None:
    """Record raw lake files in the ledger as the raw writer does: records, bytes, kinds."""
    from mad import lake as names
    from mad.state import RawFileLedger, open_state

    root = Path(settings.lake_url)
    ledger = RawFileLedger(open_state(settings.state_url), settings.writer.consumer)
    try:
        for path in files:
            key = path.relative_to(root).as_posix()
            part = names.parse_key(key)
            lines = path.read_bytes().count(b"\n")
            ledger.record(key, part.dataset, part.service, int(part.start), lines,
                          path.stat().st_size, {part.kind or "log": lines})
    finally:
        ledger.engine.dispose()


def build_demo_lake(settings: Settings, progress: bool = False) -> Path:
    """Backfill into `{data_dir}/generated`, the raw lake, one ETL pass and one detection
    pass; returns the folder of the backfill (its `labels.json` holds the incidents)."""
    from mad.detect.pipeline import DetectRunner
    from mad.etl.runner import EtlRunner
    from mad.generate.backfill import run_backfill
    from mad.generate.raw_lake import split_backfill

    out = settings.data_dir / "generated"
    run_backfill(settings.generate, out, progress=progress)
    record_raw_files(settings, split_backfill(out / "events.jsonl", Path(settings.lake_url)))
    etl = EtlRunner(settings)
    try:
        etl.run_once()
    finally:
        etl.close()
    detect = DetectRunner(settings)
    try:
        detect.run_once()
    finally:
        detect.close()
    return out
