"""`mad detect status`: where detection stands, from the state database and the lake.

`collect` is `mad.query.detection.detect_status` (plain data, also for the dashboard): it reads
what detection commits per batch, so it is current while a pass runs; `render` prints it for
people.
"""

from __future__ import annotations

from typing import Any

from mad.query.detection import detect_status as collect
from mad.words import plural

__all__ = ["collect", "render"]


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
                         f"{s['watermark']}  lag {lag}  ({plural(s['points'], 'window')})")
    else:
        lines.append("series scored: none yet (run `mad detect run`)")
    shards = data.get("shards") or []
    if shards:
        lines.append(f"shards ({len(shards) - 1} of this window size, and the incident step):")
    for row in shards:
        holder = f"held by {row['holder']} until {row['expires']}" if row["holder"] else "free"
        what = (f"fed to {row['complete_to'] or 'nothing yet'}" if row["series"] is None
                else f"{plural(row['series'], 'series', 'series')}, complete to "
                f"{row['complete_to'] or 'nothing yet'}")
        lines.append(f"  shard {row['shard']:<10} {holder}; {what}")
    mark = data.get("watermark")
    if mark is not None:
        floor = f", ingest floor {mark['ingest_floor']}" if mark["ingest_floor"] else ""
        lines.append(f"events complete to {mark['at']} (from {mark['basis']}: "
                     f"{plural(mark['sources'], 'source')}, {mark['idle']} idle{floor}); "
                     f"windows complete to {mark['complete_to']}")
    else:
        lines.append("events complete to: not known yet (run `mad etl run`, then "
                     "`mad detect run`)")
    late = data.get("late") or {}
    lines.append(f"late after scoring: {plural(late.get('windows', 0), 'series window')}, "
                 f"{plural(late.get('events', 0), 'event')} added"
                 + (f" (last found {late['last_found']})" if late.get("last_found") else ""))
    for w in (late.get("recent") or [])[:limit]:
        lines.append(f"  {w['window_start']}  {w['service']}/{w['series']}  scored with "
                     f"count {w['scored_count']}, now {w['count']}")
    lines.append(f"incidents: {plural(data['open_incidents'], 'incident')} open; "
                 f"{plural(data['pending_alerts'], 'alert')} waiting for delivery, "
                 f"{plural(data['failed_alerts'], 'alert')} refused for good, "
                 f"{plural(data.get('silenced_alerts', 0), 'alert')} silenced")
    last = data.get("last_run")
    if last is not None:
        lines.append(f"last pass: {last['status']} at {last['finished_at']}, "
                     f"{plural(last['windows'], 'window')} scored, "
                     f"{plural(last['anomalies'], 'anomaly')}"
                     + (f": {last['error']}" if last["error"] else ""))
    for f in data["alert_failures"]:
        lines.append(f"  refused {f['key']} at {f['failed_at']}: {f['error'][:160]}")
    for i in data["incidents"]:
        lines.append(f"  {i['id']:<36} {i['status']:<8} {i['severity']:<8} "
                     f"{i['started']} .. {i['last_seen']}  origin {i['origin']}, "
                     f"{plural(i['anomalies'], 'anomaly')} on {', '.join(i['services'])}")
    lines.append(f"recent anomalies: {len(data['anomalies'])}")
    for a in data["anomalies"]:
        rules = [d.removeprefix("rule:") for d in a["detectors"] if d.startswith("rule:")]
        versus = (f"threshold {a['expected']:.4g} (rule {', '.join(rules)})" if rules
                  else f"expected {a['expected']:.4g}")
        lines.append(f"  {a['window_start']}  {a['service']}/{a['series']}/{a['stat']}  "
                     f"{a['observed']:.4g} ({versus})  score "
                     f"{a['score']:.2f} {a['severity']}  {','.join(a['detectors'])}")
    return "\n".join(lines) + "\n"
