"""`mad detect status`: where detection stands, from the state database and the lake.

`collect` gathers plain data (also for the dashboard); `render` prints it for people.
Lag is the newest aggregate window in the lake minus a series' watermark (the last window of it
in the latest checkpoint, see `mad.detect.pipeline`): with `hold_windows=1` a series that is up
to date lags by one window, plus what was scored since the last checkpoint. `scored_to` is the
last window start scored, checkpointed or not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mad import lake
from mad.config import Settings
from mad.detect.lake_io import (
    UnreadableAggregates,
    aggregate_days,
    newest_start,
    read_anomalies,
)
from mad.state import DetectStore, SentAlerts, open_state, safe_url
from mad.stores import ObjectNotFound, lake_store


def collect(settings: Settings, limit: int = 10) -> dict[str, Any]:
    window = settings.detect.window
    store = lake_store(settings, must_exist=True)
    engine = open_state(settings.state_url, create=False)
    try:
        db = DetectStore(engine)
        marks = [m for m in db.watermarks() if m["window"] == window]
        incidents = db.incidents(limit)
        open_incidents = db.incidents(1000, status="open")
        pending = len(db.pending_alerts())
        failed, failures = SentAlerts(engine).failures(limit)
        scored_to = (db.load_meta(f"progress:{window}") or {}).get("scored_to")
    finally:
        engine.dispose()
    days = aggregate_days(store, window)
    newest: datetime | None = None
    if days:
        try:
            newest = newest_start(store, days[max(days)])
        except (ObjectNotFound, UnreadableAggregates):
            newest = None
    series = []
    for m in marks:
        lag = (newest - m["watermark"]).total_seconds() if newest is not None else None
        series.append({"service": m["service"], "series": m["series"],
                       "watermark": m["watermark"].isoformat(), "points": m["points"],
                       "lag_s": lag})
    series.sort(key=lambda s: (-(s["lag_s"] or 0.0), s["service"], s["series"]))
    keys = [k for k in store.list(lake.anomalies_prefix()) if k.endswith(f"/part-{window}.parquet")]
    recent = sorted(read_anomalies(store, keys[-2:]), key=lambda a: a.window_start)[-limit:]
    return {
        "window": window, "lake": store.url, "state": safe_url(settings.state_url),
        "newest_window": newest.isoformat() if newest is not None else None,
        "scored_to": scored_to,
        "series": series, "open_incidents": len(open_incidents), "pending_alerts": pending,
        "failed_alerts": failed,
        "alert_failures": [{"key": f["key"], "failed_at": f["failed_at"].isoformat(),
                            "error": f["error"]} for f in failures],
        "incidents": [{**i, **{k: (i[k].isoformat() if i[k] is not None else None)
                               for k in ("started", "last_seen", "resolved", "updated_at")}}
                      for i in incidents],
        "anomalies": [a.to_dict() for a in reversed(recent)],
    }


def render(data: dict[str, Any], limit: int = 10) -> str:
    lines = [f"detection ({data['window']} windows), lake {data['lake']}, "
             f"state {data['state']}",
             f"newest aggregate window: {data['newest_window'] or 'none yet'}; "
             f"scored to {data['scored_to'] or 'nothing yet'}"]
    series = data["series"]
    if series:
        lags = [s["lag_s"] for s in series if s["lag_s"] is not None]
        lines.append(f"series scored: {len(series)}; lag min {min(lags, default=0):.0f} s, "
                     f"max {max(lags, default=0):.0f} s")
        lines.append("most behind:")
        for s in series[:limit]:
            lag = f"{s['lag_s']:.0f} s" if s["lag_s"] is not None else "?"
            lines.append(f"  {s['service']:<14} {s['series']:<24} scored to "
                         f"{s['watermark']}  lag {lag}  ({s['points']} windows)")
    else:
        lines.append("series scored: none yet (run `mad detect run`)")
    lines.append(f"incidents: {data['open_incidents']} open; alerts waiting for delivery: "
                 f"{data['pending_alerts']}; refused for good: {data['failed_alerts']}")
    for f in data["alert_failures"]:
        lines.append(f"  refused {f['key']} at {f['failed_at']}: {f['error'][:160]}")
    for i in data["incidents"]:
        lines.append(f"  {i['id']:<36} {i['status']:<8} {i['severity']:<8} "
                     f"{i['started']} .. {i['last_seen']}  origin {i['origin']}, "
                     f"{i['anomalies']} anomalies on {', '.join(i['services'])}")
    lines.append(f"recent anomalies: {len(data['anomalies'])}")
    for a in data["anomalies"]:
        lines.append(f"  {a['window_start']}  {a['service']}/{a['series']}/{a['stat']}  "
                     f"{a['observed']:.4g} (expected {a['expected']:.4g})  score "
                     f"{a['score']:.2f} {a['severity']}  {','.join(a['detectors'])}")
    return "\n".join(lines) + "\n"
