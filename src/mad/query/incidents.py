"""The Anomalies view: incidents with their feedback, silences and alerts sent, and one
incident in full (its anomalies, and each affected series around it with an expected band).

Feedback and silences come from `mad.detect.operator` when it is installed (`feedback`,
`silenced_reasons`, else `silenced_by` per incident); without it they are None. Alerts sent are the
`detect_alerts_sent` keys `<sink>:<incident id>:<seq>:<change>` of the incident.
A missing state database is a ConfigError; a missing lake leaves `incident_detail` without
anomalies and points, with the reason in `errors`. Days the quality gate holds are left out
of `incident_detail`'s anomalies and points (`held` names the held partitions).
"""

from __future__ import annotations

import importlib
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from sqlalchemy import Engine, and_, desc, select

from mad.config import Settings
from mad.detect.lake_io import STATS, aggregate_days
from mad.errors import MadError
from mad.query.access import (
    DB_ERRORS,
    QueryError,
    check_range,
    days_between,
    first_line,
    naive,
    open_lake,
    parquet_rows,
    plain,
    state_db,
    utc,
)
from mad.query.detection import anomaly_keys, read_anomalies
from mad.query.gate import held_now
from mad.state.detect_state import decode_lists, detect_alerts_sent, detect_incidents
from mad.stores import ObjectStore

STATUSES = ("open", "resolved")
MAX_LIMIT = 2000
MAX_DAYS = 400.0
AROUND = timedelta(hours=2)
"""How far before and after an incident `incident_detail` shows its series."""
BAND_HISTORY = 30
"""Windows before a point that its rolling band is computed from (at least BAND_MIN)."""
BAND_MIN = 5
BAND_MADS = 3.0
MAX_SERIES = 24
"""Affected series `incident_detail` returns points for (the first ones seen)."""
WINDOW_S = {"1m": 60, "5m": 300, "1h": 3600}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def _operator() -> ModuleType | None:
    """`mad.detect.operator` when it is installed, else None."""
    try:
        return importlib.import_module("mad.detect.operator")
    except ImportError:
        return None


def _check(status: str | None, limit: int) -> None:
    if status is not None and status not in STATUSES:
        raise QueryError(f"unknown incident status {status!r}; known: {', '.join(STATUSES)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")


def _rows(engine: Engine, start: datetime | None, end: datetime | None, status: str | None,
          limit: int, incident_id: str | None = None,
          evidence: bool = False) -> list[dict[str, Any]]:
    t = detect_incidents
    conds = []
    if start is not None:  # overlaps [start, end): seen at or after start
        conds.append(t.c.last_seen >= start)
    if end is not None:
        conds.append(t.c.started < end)
    if status is not None:
        conds.append(t.c.status == status)
    if incident_id is not None:
        conds.append(t.c.id == incident_id)
    q = select(t)
    if conds:
        q = q.where(and_(*conds))
    q = q.order_by(desc(t.c.started), t.c.id).limit(limit)
    with engine.connect() as conn:
        rows = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(q)]
    for row in rows:
        decode_lists(row)
        if not evidence:
            del row["evidence"]
    return rows


def _alerts_sent(engine: Engine, ids: Sequence[str]) -> Counter[str]:
    """Incident id -> deliveries recorded (one per sink and change)."""
    wanted = set(ids)
    counts: Counter[str] = Counter()
    with engine.connect() as conn:
        for (key,) in conn.execute(select(detect_alerts_sent.c.key)):
            parts = str(key).split(":")
            if len(parts) >= 4 and ":".join(parts[1:-2]) in wanted:
                counts[":".join(parts[1:-2])] += 1
    return counts


def _annotate(settings: Settings, rows: list[dict[str, Any]], errors: list[str]) -> None:
    """Add `feedback` and `silenced` from the operator module (None without it)."""
    for row in rows:
        row["feedback"] = row["silenced"] = None
    op = _operator()
    if op is None or not rows:
        return
    try:
        with state_db(settings) as engine:
            labels = op.feedback(settings, [r["id"] for r in rows], engine=engine)
            reasons = op.silenced_reasons(settings, rows, engine=engine)
    except (MadError, *DB_ERRORS) as err:
        errors.append(f"operator actions: {first_line(err)}")
        return
    for row in rows:
        row["feedback"] = labels.get(row["id"])
        row["silenced"] = reasons.get(row["id"])


def incidents(settings: Settings, start: datetime | None = None, end: datetime | None = None,
              status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Incidents that overlap `[start, end)` (either end open), newest start first: `id`,
    `window`, `status`, `started`, `last_seen`, `resolved`, `origin`, `severity`,
    `anomalies`, `peak_score`, `services`, `series` (`service/series/stat` keys),
    `updated_at`, `feedback` (the latest label `{verdict, note, user, at}` or None),
    `silenced` (why its alerts are held back now, or None) and `alerts_sent`."""
    _check(status, limit)
    if start is not None and end is not None:
        start, end = check_range(start, end, MAX_DAYS)
    start = None if start is None else utc(start)
    end = None if end is None else utc(end)
    with state_db(settings) as engine:
        rows = _rows(engine, start, end, status, limit)
        sent = _alerts_sent(engine, [r["id"] for r in rows])
    errors: list[str] = []
    _annotate(settings, rows, errors)
    for row in rows:
        row["alerts_sent"] = sent.get(row["id"], 0)
    return rows


def incident_detail(settings: Settings, incident_id: str) -> dict[str, Any]:
    """One incident: `incident` (as `incidents` gives it, plus `evidence`: per series,
    earliest onset first, `service`, `series`, `stat`, `onset` (when it began to leave its
    normal band), `first` and `last` (its anomalous windows), `windows` (how many),
    `longest` (the most in a row), `streak` (in a row up to `last`), `observed`, `expected`,
    `lower`, `upper` (at `first`), `score` (the highest), `detectors` (at `first`),
    `severity` (the highest) and `origin` (true for the series whose onset named the
    origin); [] for an incident saved before evidence was kept),
    `anomalies` (its anomalies:
    window_start, service, series, stat, observed, expected, lower, upper, score, severity,
    detectors), `series` (per affected `service/series/stat`, at most MAX_SERIES: `key`,
    `service`, `series`, `stat` and `points` from 2 h before to 2 h after it, each
    `window_start`, `observed`, `expected`, `lower`, `upper`, `anomaly` (bool) and
    `band_source`: "detector" where detection stored the band (its anomalies), else
    "rolling", the median of the BAND_HISTORY windows before ± 3 MAD (None bounds with fewer
    than BAND_MIN windows)) and `errors` (parts that could not be read)."""
    if not isinstance(incident_id, str) or not _ID.fullmatch(incident_id):
        raise QueryError(f"bad incident id {incident_id!r}")
    with state_db(settings) as engine:
        rows = _rows(engine, None, None, None, 1, incident_id, evidence=True)
        if not rows:
            raise QueryError(f"no incident {incident_id!r} (see `mad detect status`)")
        sent = _alerts_sent(engine, [incident_id])
    errors: list[str] = []
    _annotate(settings, rows, errors)
    incident = {**rows[0], "alerts_sent": sent.get(incident_id, 0)}
    window = str(incident["window"])
    out: dict[str, Any] = {"incident": incident, "anomalies": [], "series": [], "held": [],
                           "errors": errors}
    if window not in WINDOW_S:
        errors.append(f"incident window {window!r} is not one of {', '.join(WINDOW_S)}")
        return out
    gate = held_now(settings)
    hidden = set(gate.days(window))
    step = timedelta(seconds=WINDOW_S[window])
    out["held"] = gate.of_days(days_between(
        incident["started"] - AROUND - BAND_HISTORY * step,
        incident["last_seen"] + AROUND + 2 * step), window)
    try:
        store = open_lake(settings)
        out["anomalies"] = _anomalies(store, incident, hidden)
        out["series"] = _series(store, incident, out["anomalies"], hidden)
    except MadError as err:
        errors.append(f"lake: {first_line(err)}")
    return out


def _anomalies(store: ObjectStore, incident: dict[str, Any],
               hidden: set[str]) -> list[dict[str, Any]]:
    started, last = incident["started"], incident["last_seen"]
    keys_of = set(incident["series"])
    days = days_between(started, last + timedelta(seconds=1)) - hidden
    files = [k for k in anomaly_keys(store, incident["window"])
             if k.split("/")[1].removeprefix("date=") in days]
    found = [a for a in read_anomalies(store, files)
             if a.key in keys_of and started <= a.window_start <= last]
    found.sort(key=lambda a: (a.window_start, a.service, a.series, a.stat))
    return [{**{k: plain(v) for k, v in a.to_dict().items()}, "window_start": a.window_start,
             "key": a.key} for a in found]


def _series(store: ObjectStore, incident: dict[str, Any], anomalies: list[dict[str, Any]],
            hidden: set[str]) -> list[dict[str, Any]]:
    window = incident["window"]
    step = timedelta(seconds=WINDOW_S[window])
    first, last = incident["started"] - AROUND, incident["last_seen"] + AROUND + step
    read_from = first - BAND_HISTORY * step
    wanted = []
    for key in incident["series"][:MAX_SERIES]:
        parts = str(key).split("/")
        if len(parts) == 3 and parts[2] in STATS:
            wanted.append(parts)
    if not wanted:
        return []
    touched = days_between(read_from, last) - hidden
    files = [k for day, keys in aggregate_days(store, window).items() if day in touched
             for k in keys]
    stats = sorted({stat for _, _, stat in wanted})
    rows = parquet_rows(store, files, f"""
        SELECT window_start, CAST(service AS VARCHAR) AS service,
               CAST(series AS VARCHAR) AS series, {', '.join(f'"{s}"' for s in stats)}
        FROM data WHERE window_start >= ? AND window_start < ?
          AND list_contains(?, CAST(service AS VARCHAR) || '/' || CAST(series AS VARCHAR))
        ORDER BY window_start""",
        [naive(read_from), naive(last), sorted({f"{a}/{b}" for a, b, _ in wanted})])
    flagged = {(a["key"], a["window_start"]): a for a in anomalies}
    out = []
    for service, series, stat in wanted:
        key = f"{service}/{series}/{stat}"
        values = [(r["window_start"], r[stat]) for r in rows
                  if r["service"] == service and r["series"] == series]
        points = []
        for i, (when, value) in enumerate(values):
            if when < first:
                continue
            history = [v for _, v in values[max(0, i - BAND_HISTORY):i] if v is not None]
            points.append(_point(when, value, history, flagged.get((key, when))))
        out.append({"key": key, "service": service, "series": series, "stat": stat,
                    "points": points})
    return out


def _point(when: datetime, value: float | None, history: list[float],
           anomaly: dict[str, Any] | None) -> dict[str, Any]:
    """One window of a series with its expected band (see `incident_detail`)."""
    if anomaly is not None:
        return {"window_start": when, "observed": value, "expected": anomaly["expected"],
                "lower": anomaly["lower"], "upper": anomaly["upper"], "anomaly": True,
                "band_source": "detector"}
    expected = lower = upper = None
    if len(history) >= BAND_MIN:
        expected = statistics.median(history)
        mad = statistics.median(abs(v - expected) for v in history)
        lower, upper = expected - BAND_MADS * mad, expected + BAND_MADS * mad
    return {"window_start": when, "observed": value, "expected": expected, "lower": lower,
            "upper": upper, "anomaly": False, "band_source": "rolling"}
