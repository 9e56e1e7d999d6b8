"""The records that flow out of detection: anomalies, incidents and their state changes.

Pure data, shared by the pipeline (`mad.detect.pipeline`), the incident grouping
(`mad.detect.incidents`) and the alert sinks (`mad.detect.alerts`). Times are UTC datetimes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Severity = Literal["warning", "critical"]
Change = Literal["opened", "escalated", "resolved"]


@dataclass(frozen=True)
class Anomaly:
    """One aggregate window of one series that the decision engine (or a rule) flagged."""

    service: str
    series: str  # catalog series, or the derived `events` / `error_rate`
    stat: str  # the aggregate column scored: avg, p99, ...
    window: str  # 1m, 5m, 1h
    window_start: datetime
    score: float  # in [0, 1]
    severity: Severity
    observed: float
    expected: float  # the baseline the detectors compared against
    lower: float  # the band of normal values around `expected`
    upper: float
    detectors: tuple[str, ...]  # members (or `rule:<name>`) that pushed the score up

    @property
    def key(self) -> str:
        """`service/series/stat`: one scored series."""
        return f"{self.service}/{self.series}/{self.stat}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["window_start"] = self.window_start.isoformat()
        out["detectors"] = list(self.detectors)
        return out


@dataclass
class Incident:
    """Anomalies that overlap in time (within the grouping gap), across series and services."""

    id: str
    status: Literal["open", "resolved"]
    started: datetime  # first anomalous window start
    last_seen: datetime  # latest anomalous window start
    resolved: datetime | None
    origin: str  # the likely origin service: earliest, then most upstream dependency
    services: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)  # Anomaly.key values, first seen first
    anomalies: int = 0
    peak_score: float = 0.0
    severity: Severity = "warning"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("started", "last_seen", "resolved"):
            value = getattr(self, name)
            out[name] = value.isoformat() if value is not None else None
        return out


@dataclass(frozen=True)
class IncidentChange:
    """An incident changed state; each change is sent as exactly one alert."""

    incident: Incident  # a snapshot taken at the change
    change: Change
    anomaly: Anomaly | None  # the anomaly behind it (None for `resolved`)
    seq: int  # 0 for `opened`, then 1, 2, ... per incident: part of the dedup key

    @property
    def dedup_key(self) -> str:
        return f"{self.incident.id}:{self.seq}:{self.change}"
