"""After every test of the ETL, ingest, quality and runtime suites: reconciliation holds in
each SQLite state database the test left in its `tmp_path`.

- The ETL reconciles in every pass: no `reconciliation` result of the database may have
  failed (lines in = new + duplicates + quarantined per run; the lake against the ledgers).
- The ingest API counts its acknowledgements and the raw writer the records it landed: for
  every shard-hour the writer has landed past, at least as many records are in recorded raw
  files as the API acknowledged (`mad.quality.reconcile.ingest_results`, with the files
  taken as present: the API-to-writer half of it).

A test that loses data on purpose (deletes a lake file behind the ledgers) is marked
`loses_data`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from mad.config import ReconciliationCheck
from mad.quality.reconcile import ingest_results
from mad.state import IngestAcks, QualityStore, RawFileLedger, open_state

SUITES = ("etl", "ingest", "quality", "runtime")


def failures(root: Path) -> list[str]:
    """What does not reconcile in the state databases under `root`, one line each."""
    found: list[str] = []
    for db in sorted(root.rglob("*.db")):
        if not _is_state(db):
            continue
        engine = open_state(f"sqlite:///{db}", create=False)
        try:
            found += [f"{db.name}: {r['dataset']}/{r['partition']} {r['metric']}: "
                      f"{r['detail']}" for r in QualityStore(engine).results()
                      if r["check"] == "reconciliation" and r["status"] == "fail"]
            acks = IngestAcks(engine)
            found += [f"{db.name}: {r.partition}: {r.detail}" for r in ingest_results(
                acks.acked(), RawFileLedger(engine, "tests").landed(), lambda key: True,
                acks.landed_through(), ReconciliationCheck()) if r.failed and r.partition != "*"]
        except SQLAlchemyError:
            continue  # not every table is there (a test of the state database itself)
        finally:
            engine.dispose()
    return found


def _is_state(db: Path) -> bool:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return {"quality_results", "ingest_acks", "raw_files"} <= names
