"""Stage 04 as the operator sees it: how far detection has scored, each series' lag behind
the newest aggregate window, incidents, alerts waiting or refused, recent anomalies.
`mad detect status` prints it; the dashboard's Overview reads `standing`.

Where detection stands comes from what it commits per batch (`progress:<window>` in
`detect_meta`: the last window start scored and every series' last window), merged with the
checkpointed watermarks (`detect_series`) and the last recorded pass (`detect_runs`), so it is
current while a pass runs, not only after the next checkpoint. Lag is the newest aggregate
window in the lake minus a series' last scored window: a series that is up to date lags by
about one window plus `detect.allowed_lateness_s` (a window is scored once complete), more
while a host's clock runs behind.

The event-time watermark of the last pass (`detect_watermarks`: when events are complete,
from what) and the windows found changed after they were scored (`detect_late`: late events)
come from `mad.state.detect_scored`.

Only looks: a missing lake or state database is a ConfigError (nothing is created).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from mad import lake
from mad.config import Settings
from mad.detect.lake_io import aggregate_days
from mad.detect.model import Anomaly
from mad.detect.shards import shard_of
from mad.errors import MadError
from mad.query.access import BUCKETS, DB_ERRORS, open_lake, parquet_rows, state_db, utc
from mad.state import DetectRuns, DetectStore, OperatorStore, ScoredStore, SentAlerts, safe_url
from mad.state.leases import LeaseStore
from mad.stores import ObjectStore


@dataclass(frozen=True)
class Mark:
    """A series' last scored window start and how many windows it has scored."""

    watermark: datetime
    points: int


def scored_marks(engine: Engine, window: str) -> tuple[dict[tuple[str, str], Mark],
                                                       datetime | None]:
    """Every series of `window` with its last scored window (checkpoint or later batch),
    and the last window start scored overall (None before the first batch)."""
    db = DetectStore(engine)
    marks = {(m["service"], m["series"]): Mark(m["watermark"], int(m["points"]))
             for m in db.watermarks() if m["window"] == window}
    progress = db.load_meta(f"progress:{window}") or {}
    shards = db.load_meta_under(f"progress:{window}:")  # with detect.shards: one per shard
    scored_to = _time(progress.get("scored_to"))
    for doc in [progress, *shards.values()]:
        for item in doc.get("series") or ():
            mark = _mark(item)
            if mark is None:
                continue
            key, value = mark
            if key not in marks or marks[key].watermark < value.watermark:
                marks[key] = value
        shard_to = _time(doc.get("scored_to"))
        if shard_to is not None and (scored_to is None or shard_to > scored_to):
            scored_to = shard_to
    if scored_to is None:
        runs = _recent_runs(engine, window, 1)
        scored_to = runs[0]["scored_to"] if runs else None
    if marks:
        newest_mark = max(m.watermark for m in marks.values())
        scored_to = newest_mark if scored_to is None else max(scored_to, newest_mark)
    return marks, scored_to


def _mark(item: Any) -> tuple[tuple[str, str], Mark] | None:
    """One `[service, series, iso time, points]` of the progress record, or None if bad."""
    if not isinstance(item, list) or len(item) != 4:
        return None
    service, series, when, points = item
    moment = _time(when)
    if not isinstance(service, str) or not isinstance(series, str) or moment is None \
            or not isinstance(points, int):
        return None
    return (service, series), Mark(moment, points)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _recent_runs(engine: Engine, window: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest detection passes (none on a database from before `detect_runs`)."""
    try:
        return DetectRuns(engine).recent(limit, window=window)
    except DB_ERRORS:
        return []


def newest_window(store: ObjectStore, window: str) -> datetime | None:
    """The latest aggregate window start of `window` in the lake (None: none, or its newest
    day is being replaced or unreadable right now)."""
    days = aggregate_days(store, window)
    if not days:
        return None
    try:
        rows = parquet_rows(store, days[max(days)], "SELECT max(window_start) AS t FROM data")
    except MadError:  # being replaced by the ETL, or not Parquet
        return None
    newest = rows[0]["t"] if rows else None
    return newest if isinstance(newest, datetime) else None


def read_anomalies(store: ObjectStore, keys: list[str]) -> list[Anomaly]:
    """The anomalies stored in `keys` (files of `md-anomalies`), each read on a connection
    of its own (an unreadable file fails this call only)."""
    rows = parquet_rows(store, keys, 'SELECT window_start, "window", service, series, stat, '
                        "score, severity, observed, expected, lower, upper, detectors "
                        "FROM data")
    return [Anomaly(service=r["service"], series=r["series"], stat=r["stat"],
                    window=r["window"], window_start=r["window_start"], score=_num(r["score"]),
                    severity=r["severity"], observed=_num(r["observed"]),
                    expected=_num(r["expected"]), lower=_num(r["lower"]),
                    upper=_num(r["upper"]), detectors=tuple(r["detectors"] or ()))
            for r in rows]


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def anomaly_keys(store: ObjectStore, window: str | None = None) -> list[str]:
    """The `md-anomalies` files (of one window size; one per day, or one per day and
    detection shard), in day order."""
    return sorted(k for k in store.list(lake.anomalies_prefix())
                  if (size := lake.anomalies_window(k)) is not None
                  and (window is None or size == window))


def last_days(keys: list[str], days: int) -> list[str]:
    """The keys (of `anomaly_keys`) of the newest `days` days."""
    newest = sorted({_day(k) for k in keys})[-days:]
    return [k for k in keys if _day(k) in newest]


def _day(key: str) -> str:
    return key.removeprefix(lake.anomalies_prefix()).split("/", 1)[0]


def detect_status(settings: Settings, limit: int = 10) -> dict[str, Any]:
    """What `mad detect status --format json` prints: `window`, `lake`, `state` (password
    masked), `newest_window` and `scored_to` (ISO text or None), `series` (service, series,
    watermark, points, lag_s; most behind first), `open_incidents`, `pending_alerts`,
    `failed_alerts`, `silenced_alerts` (held back by a silence) and the newest
    `alert_failures`, the newest `limit` `incidents` and
    recent `anomalies` (ISO text times), `last_run` (the newest recorded pass or None),
    `watermark` (the event-time watermark of the last pass: `at`, `complete_to` (the latest
    complete window start), `basis`, `sources`, `idle`, `ingest_floor`, `updated_at`; None
    before the first pass) and `late` (`windows` changed after they were scored, `events`
    added to them, `last_found`, and the newest `limit` of them as `recent`)."""
    window = settings.detect.window
    store = open_lake(settings)
    with state_db(settings) as engine:
        db = DetectStore(engine)
        marks, scored_to = scored_marks(engine, window)
        incidents = db.incidents(limit)
        open_incidents = db.incidents(1000, status="open")
        pending = len(db.pending_alerts())
        failed, failures = SentAlerts(engine).failures(limit)
        silenced = _silenced_count(engine)
        runs = _recent_runs(engine, window, 1)
        mark, late = watermark_and_late(engine, settings, limit)
        shards = shard_rows(engine, settings, marks)
    newest = newest_window(store, window)
    series: list[dict[str, Any]] = []
    for (service, name), m in marks.items():
        lag = (newest - m.watermark).total_seconds() if newest is not None else None
        series.append({"service": service, "series": name,
                       "watermark": m.watermark.isoformat(), "points": m.points, "lag_s": lag})
    series.sort(key=lambda s: (-(s["lag_s"] or 0.0), s["service"], s["series"]))
    keys = anomaly_keys(store, window)
    recent = sorted(read_anomalies(store, last_days(keys, 2)),
                    key=lambda a: a.window_start)[-limit:]
    return {
        "window": window, "lake": store.url, "state": safe_url(settings.state_url),
        "newest_window": newest.isoformat() if newest is not None else None,
        "scored_to": scored_to.isoformat() if scored_to is not None else None,
        "series": series, "open_incidents": len(open_incidents), "pending_alerts": pending,
        "failed_alerts": failed, "silenced_alerts": silenced,
        "alert_failures": [{"key": f["key"], "failed_at": f["failed_at"].isoformat(),
                            "error": f["error"]} for f in failures],
        "incidents": [{**i, **{k: (i[k].isoformat() if i[k] is not None else None)
                               for k in ("started", "last_seen", "resolved", "updated_at")}}
                      for i in incidents],
        "anomalies": [a.to_dict() for a in reversed(recent)],
        "last_run": _run_text(runs[0]) if runs else None,
        "watermark": mark, "late": late, "shards": shards,
    }


def shard_rows(engine: Engine, settings: Settings,
               marks: dict[tuple[str, str], Mark]) -> list[dict[str, Any]]:
    """With `detect.shards` > 1, one row per shard: `shard` (`s<k>of<N>`), `holder`
    (host:pid of the worker holding its lease, None when free), `expires`, `complete_to`
    and how many `series` it has scored; plus the incident step as shard `incidents` with
    `complete_to` its fed-to. [] without shards."""
    n, window = settings.detect.shards, settings.detect.window
    if n <= 1:
        return []
    try:
        held = {h.name: h for h in LeaseStore(engine).held(f"detect:{window}:")}
        db = DetectStore(engine)
        complete = db.load_meta_under(f"complete:{window}:")
        step = db.load_meta(f"incidents:{window}:of{n}") or {}
    except DB_ERRORS:
        return []
    per_shard: dict[int, int] = {}
    for service, series in marks:
        k = shard_of(service, series, n)
        per_shard[k] = per_shard.get(k, 0) + 1
    rows = []
    for k in range(n):
        name = lake.shard_name(k, n)
        lease = held.get(f"detect:{window}:shard:{name}")
        rows.append({"shard": name, "holder": _holder(lease.owner) if lease else None,
                     "expires": lease.expires.isoformat() if lease else None,
                     "complete_to": (complete.get(f"complete:{window}:{name}") or {}).get("to"),
                     "series": per_shard.get(k, 0)})
    lease = held.get(f"detect:{window}:incidents")
    rows.append({"shard": "incidents", "holder": _holder(lease.owner) if lease else None,
                 "expires": lease.expires.isoformat() if lease else None,
                 "complete_to": step.get("fed_to"), "series": None})
    return rows


def _holder(owner: str) -> str:
    """`host:pid` of a lease owner `host:pid:id`."""
    return owner.rpartition(":")[0] or owner


def watermark_and_late(engine: Engine, settings: Settings,
                        limit: int) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The last pass's watermark and the late windows, as plain data (none in a database
    that detection has not opened since they exist)."""
    window = settings.detect.window
    store = ScoredStore(engine)
    try:
        saved = store.watermark(window)
        late = store.late(window, limit)
    except DB_ERRORS:
        return None, {"windows": 0, "events": 0, "last_found": None, "recent": []}
    late = {**late, "last_found": _iso(late["last_found"]),
            "recent": [{k: _iso(v) if isinstance(v, datetime) else v for k, v in r.items()}
                       for r in late["recent"]]}
    if saved is None:
        return None, late
    step = float(BUCKETS.get(window, 60))
    complete_to = saved.at - timedelta(seconds=step + settings.detect.allowed_lateness_s)
    return {"at": saved.at.isoformat(), "complete_to": complete_to.isoformat(),
            "basis": saved.basis, "sources": saved.sources, "idle": saved.idle,
            "ingest_floor": _iso(saved.ingest_floor),
            "updated_at": saved.updated_at.isoformat()}, late


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _silenced_count(engine: Engine) -> int:
    """Alerts held back by a snooze or maintenance window, ever (0 in a database that
    detection has not opened since silences exist)."""
    try:
        return OperatorStore(engine).silenced_count()
    except DB_ERRORS:
        return 0


def _run_text(run: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in run.items()}
