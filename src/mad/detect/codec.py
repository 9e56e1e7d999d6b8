"""Detection records to and from plain JSON-able dicts (the alert outbox stores changes so).

The inverse of `Anomaly.to_dict` / `Incident.to_dict`, plus the same pair for
`IncidentChange`. Times are ISO-8601 strings with their UTC offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mad.detect.model import Anomaly, Evidence, Incident, IncidentChange


def parse_time(value: str) -> datetime:
    """An ISO-8601 time as a UTC datetime (a time without offset is UTC)."""
    t = datetime.fromisoformat(value)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def anomaly_from_dict(d: dict[str, Any]) -> Anomaly:
    return Anomaly(
        service=str(d["service"]), series=str(d["series"]), stat=str(d["stat"]),
        window=str(d["window"]), window_start=parse_time(d["window_start"]),
        score=float(d["score"]), severity=d["severity"], observed=_float(d["observed"]),
        expected=_float(d["expected"]), lower=_float(d["lower"]), upper=_float(d["upper"]),
        detectors=tuple(str(n) for n in d["detectors"]),
        onset=parse_time(d["onset"]) if d.get("onset") else None)


def incident_from_dict(d: dict[str, Any]) -> Incident:
    return Incident(
        id=str(d["id"]), status=d["status"], started=parse_time(d["started"]),
        last_seen=parse_time(d["last_seen"]),
        resolved=parse_time(d["resolved"]) if d.get("resolved") else None,
        origin=str(d["origin"]), services=list(d.get("services", [])),
        series=list(d.get("series", [])), anomalies=int(d.get("anomalies", 0)),
        peak_score=float(d.get("peak_score", 0.0)), severity=d.get("severity", "warning"),
        evidence=[Evidence.from_dict(e) for e in d.get("evidence") or []])


def change_to_dict(change: IncidentChange) -> dict[str, Any]:
    return {"incident": change.incident.to_dict(), "change": change.change,
            "anomaly": change.anomaly.to_dict() if change.anomaly is not None else None,
            "seq": change.seq}


def change_from_dict(d: dict[str, Any]) -> IncidentChange:
    anomaly = d.get("anomaly")
    return IncidentChange(incident_from_dict(d["incident"]), d["change"],
                          anomaly_from_dict(anomaly) if anomaly else None, int(d["seq"]))


def _float(value: Any) -> float:
    """JSON has no NaN: orjson writes it as null, which reads back as NaN."""
    return float("nan") if value is None else float(value)
