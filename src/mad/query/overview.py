"""The Overview: the whole pipeline at a glance, and its throughput over time.

`overview` never raises for a part it cannot read (no stream yet, no state database, no
lake): that part keeps its empty values and a one-line reason goes to `errors`, so a page
can show what there is ("no data yet: is the ingest API up?"). `rates` needs the state
database (a ConfigError without it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, select

from mad import lake
from mad.config import Settings
from mad.detect.operator import silenced_count
from mad.errors import MadError
from mad.etl.discover import pending
from mad.etl.runner import PLAN
from mad.query.access import (
    DB_ERRORS,
    buckets,
    first_line,
    open_lake,
    parquet_rows,
    state_db,
)
from mad.query.detection import newest_window, scored_marks, watermark_and_late
from mad.query.ingest import ingest_status, ledger_summary
from mad.query.quality import counters, latest_scores
from mad.state import Components, DetectStore, EtlLedger, SentAlerts
from mad.state.etl_runs import etl_runs
from mad.state.raw_files import raw_files
from mad.stores import ObjectStore

STALE_AFTER_S = 15.0
"""A component whose last report is older than this is shown stale (its supervisor is gone)."""
QUARANTINE_SCAN_BYTES = 64 * 2**20
"""Quarantine reasons are counted from its Parquet files up to this size; past it, only the
total from the ETL runs is given (under the reason `all`)."""


def _part(errors: list[str], name: str, read: Callable[[], dict[str, Any]],
          empty: dict[str, Any]) -> dict[str, Any]:
    """`read()`, or `empty` with the reason in `errors`."""
    try:
        return read()
    except (MadError, OSError, *DB_ERRORS) as err:
        errors.append(f"{name}: {first_line(err)}")
        return empty


def overview(settings: Settings) -> dict[str, Any]:
    """`ingest`, `raw`, `etl`, `detect`, `quality`, `components` and `errors` (see
    docs/query.md)."""
    errors: list[str] = []
    ingest = _part(errors, "ingest", lambda: _ingest(settings, errors), _empty_ingest())
    try:
        store: ObjectStore | None = open_lake(settings)
    except MadError as err:
        errors.append(f"lake: {first_line(err)}")
        store = None
    raw = ingest.pop("raw")
    etl = _part(errors, "etl", lambda: _etl(settings, store, errors), _empty_etl())
    detect = _part(errors, "detect", lambda: _detect(settings, store, errors), _empty_detect())
    components = _part(errors, "components", lambda: {"rows": _components(settings)},
                       {"rows": []})["rows"]
    quality = _part(errors, "quality", lambda: _quality(settings), _empty_quality())
    return {"ingest": ingest, "raw": raw, "etl": etl, "detect": detect, "quality": quality,
            "components": components, "errors": errors}


def _empty_quality() -> dict[str, Any]:
    return {"held": 0, "accepted": 0, "lowest_score": None, "lowest_dataset": None}


def _quality(settings: Settings) -> dict[str, Any]:
    """Partitions the quality gate holds (left out of the dashboard's reads) and accepted,
    and the lowest of the datasets' latest scores (`mad.query.quality.latest_scores`)."""
    found = counters(settings)
    scored = [s for s in latest_scores(settings) if s["score"] is not None]
    low = min(scored, key=lambda s: s["score"]) if scored else None
    return {"held": found["gate"]["held"], "accepted": found["gate"]["accepted"],
            "lowest_score": None if low is None else low["score"],
            "lowest_dataset": None if low is None else low["dataset"]}


def _empty_ingest() -> dict[str, Any]:
    return {"accepted": 0, "rejected": 0, "rejected_by_reason": {}, "stream": None,
            "shards": [], "lag_records": None, "lag_age_s": None, "writer": None, "raw": {}}


def _ingest(settings: Settings, errors: list[str]) -> dict[str, Any]:
    out = _empty_ingest()
    try:
        status = ingest_status(settings)
    except MadError as err:  # no stream here yet: the ledger may still be there
        errors.append(f"stream: {first_line(err)}")
        status = {**ledger_summary(settings), "stream": None, "shards": [], "writer": None}
    if status["state_error"]:
        errors.append(f"raw files ledger: {status['state_error']}")
    datasets = status["datasets"]
    out["raw"] = datasets
    out["accepted"] = sum(d["records"] for name, d in datasets.items()
                          if name in lake.RAW_DATASETS.values())
    out["rejected"] = datasets.get(lake.ERRORS_DATASET, {}).get("records", 0)
    out["rejected_by_reason"] = status["errors"]
    out["stream"], out["shards"], out["writer"] = (status["stream"], status["shards"],
                                                   status["writer"])
    lags = [s["lag_records"] for s in status["shards"] if s["lag_records"] is not None]
    ages = [s["lag_seconds"] for s in status["shards"] if s["lag_seconds"] is not None]
    out["lag_records"] = sum(lags) if lags else None
    out["lag_age_s"] = max(ages) if ages else None
    return out


def _empty_etl() -> dict[str, Any]:
    return {"runs_ok": 0, "runs_failed": 0, "runs_running": 0, "pending_raw_files": None,
            "rows_in": 0, "rows_out": 0, "duplicates": 0, "late": 0, "quarantined": {},
            "raw_bytes": None, "parquet_bytes": None, "compression_ratio": None}


def _etl(settings: Settings, store: ObjectStore | None, errors: list[str]) -> dict[str, Any]:
    out = _empty_etl()
    if store is not None:
        out["raw_bytes"] = sum(sum(store.sizes(f"{d}/").values())
                               for d in lake.RAW_DATASETS.values())
        out["parquet_bytes"] = sum(sum(store.sizes(f"{d}/").values())
                                   for d in lake.TRANSFORMED_DATASETS.values())
        if out["parquet_bytes"]:
            out["compression_ratio"] = out["raw_bytes"] / out["parquet_bytes"]
    with state_db(settings) as engine:
        ledger = EtlLedger(engine)
        totals = ledger.totals()
        out["runs_ok"] = totals.get("succeeded", 0)
        out["runs_failed"] = totals.get("failed", 0)
        out["runs_running"] = totals.get("running", 0)
        out.update(_event_counts(engine))
        if store is not None:
            out["pending_raw_files"] = len(pending(store, ledger.done_keys(PLAN)))
    if store is not None:
        out["quarantined"] = _quarantine_reasons(store, out.pop("_quarantined"), errors)
    else:
        out["quarantined"] = {"all": out.pop("_quarantined")} if out["_quarantined"] else {}
    return out


def _event_counts(engine: Engine) -> dict[str, int]:
    """Rows in and out, duplicates, late and quarantined, over every succeeded events run."""
    t = etl_runs
    names = ("rows_in", "rows_out", "duplicates", "late", "quarantined")
    q = select(*(t.c[n] for n in names)).where(and_(t.c.plan == PLAN,
                                                    t.c.status == "succeeded"))
    sums = dict.fromkeys(names, 0)
    with engine.connect() as conn:
        for row in conn.execute(q):
            for name, value in zip(names, row, strict=True):
                sums[name] += int(value or 0)
    sums["_quarantined"] = sums.pop("quarantined")
    return sums


def _quarantine_reasons(store: ObjectStore, total: int, errors: list[str]) -> dict[str, int]:
    sizes = {k: v for k, v in store.sizes(f"{lake.QUARANTINE_DATASET}/").items()
             if k.endswith(".parquet")}
    if sum(sizes.values()) > QUARANTINE_SCAN_BYTES:
        errors.append(f"quarantine: more than {QUARANTINE_SCAN_BYTES} bytes, reasons not "
                      "counted (total from the ETL runs)")
        return {"all": total} if total else {}
    rows = parquet_rows(store, sorted(sizes), "SELECT CAST(reason AS VARCHAR) AS reason, "
                        "count(*) AS n FROM data GROUP BY 1 ORDER BY 2 DESC, 1")
    return {str(r["reason"]): int(r["n"]) for r in rows}


def _empty_detect() -> dict[str, Any]:
    return {"window": None, "scored_to": None, "newest_window": None, "lag_s": None,
            "series": 0, "open_incidents": 0, "pending_alerts": 0, "failed_alerts": 0,
            "silenced": None, "complete_to": None, "late_windows": 0, "late_events": 0}


def _detect(settings: Settings, store: ObjectStore | None,
            errors: list[str]) -> dict[str, Any]:
    out = _empty_detect()
    window = out["window"] = settings.detect.window
    with state_db(settings) as engine:
        marks, scored_to = scored_marks(engine, window)
        db = DetectStore(engine)
        out["open_incidents"] = len(db.incidents(100_000, status="open"))
        out["pending_alerts"] = len(db.pending_alerts())
        out["failed_alerts"] = SentAlerts(engine).failures(1)[0]
        mark, late = watermark_and_late(engine, settings, 0)
    out["scored_to"], out["series"] = scored_to, len(marks)
    done = None if mark is None else mark.get("complete_to")
    out["complete_to"] = datetime.fromisoformat(done) if isinstance(done, str) else None
    out["late_windows"], out["late_events"] = int(late["windows"]), int(late["events"])
    newest = newest_window(store, window) if store is not None else None
    out["newest_window"] = newest
    if newest is not None and scored_to is not None:
        out["lag_s"] = (newest - scored_to).total_seconds()
    try:
        out["silenced"] = int(silenced_count(settings))
    except (MadError, *DB_ERRORS) as err:
        errors.append(f"silences: {first_line(err)}")
    return out


def _components(settings: Settings) -> list[dict[str, Any]]:
    """The supervisor's component reports, each with `stale`; none before the runtime
    records them."""
    now = datetime.now(UTC)
    with state_db(settings) as engine:
        try:
            rows: list[dict[str, Any]] = [{str(k): v for k, v in r.items()}
                                          for r in Components(engine).all()]
        except DB_ERRORS:  # a state database the supervisor never wrote to
            return []
    for row in rows:
        updated = row.get("updated_at")
        row["stale"] = not isinstance(updated, datetime) or (
            now - updated).total_seconds() > STALE_AFTER_S
    return rows


def rates(settings: Settings, start: datetime, end: datetime,
          bucket: str = "1m") -> list[dict[str, Any]]:
    """Per bucket of `[start, end)` (every bucket, empty ones too): `bucket_start`,
    `events_in` (records the raw writer wrote, by file write time), `rejected` (records it
    wrote to the errors dataset) and `rows_out` (new rows of the ETL's events runs, by the
    time each run ended)."""
    start, end, first, step, count = buckets(start, end, bucket)
    out: list[dict[str, Any]] = [
        {"bucket_start": first + timedelta(seconds=n * step), "events_in": 0, "rejected": 0,
         "rows_out": 0} for n in range(count)]

    def add(when: datetime, name: str, value: int) -> None:
        n = int((when - first).total_seconds() // step)
        if 0 <= n < count:
            out[n][name] += value

    r, t = raw_files, etl_runs
    with state_db(settings) as engine, engine.connect() as conn:
        for dataset, written, records in conn.execute(select(
                r.c.dataset, r.c.written_at, r.c.records).where(and_(
                r.c.written_at >= start, r.c.written_at < end))):
            add(written, "rejected" if dataset == lake.ERRORS_DATASET else "events_in",
                int(records))
        for finished, rows_out in conn.execute(select(t.c.finished_at, t.c.rows_out).where(
                and_(t.c.plan == PLAN, t.c.status == "succeeded", t.c.finished_at >= start,
                     t.c.finished_at < end))):
            add(finished, "rows_out", int(rows_out or 0))
    return out
