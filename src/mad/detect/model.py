"""The records that flow out of detection: anomalies, incidents and their state changes.

Pure data, shared by the pipeline (`mad.detect.pipeline`), the incident grouping
(`mad.detect.incidents`) and the alert sinks (`mad.detect.alerts`). Times are UTC datetimes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
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
    onset: datetime | None = None  # when the series began to leave its normal band (at or
    # before `window_start`; None when not estimated, e.g. read back from `md-anomalies`)

    @property
    def key(self) -> str:
        """`service/series/stat`: one scored series."""
        return f"{self.service}/{self.series}/{self.stat}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["window_start"] = self.window_start.isoformat()
        out["detectors"] = list(self.detectors)
        out["onset"] = self.onset.isoformat() if self.onset is not None else None
        return out


@dataclass(frozen=True)
class Evidence:
    """The change one series of an incident showed: the first anomalous window's values,
    when the change began (`onset`) and how long it lasted."""

    service: str
    series: str
    stat: str
    onset: datetime  # when the series began to leave its normal band
    first: datetime  # its first anomalous window start in the incident
    last: datetime  # its latest anomalous window start
    windows: int  # anomalous window starts seen
    observed: float  # at `first`
    expected: float
    lower: float
    upper: float
    score: float  # the highest score seen
    detectors: tuple[str, ...]  # at `first`
    severity: Severity = "warning"  # the highest seen
    origin: bool = False  # this series' onset named the incident's origin
    streak: int = 1  # consecutive anomalous windows up to `last`
    longest: int = 1  # the longest such run

    @property
    def key(self) -> str:
        return f"{self.service}/{self.series}/{self.stat}"

    @property
    def rule(self) -> bool:
        """A threshold rule fired (rules already wait for consecutive windows)."""
        return any(d.startswith("rule:") for d in self.detectors)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("onset", "first", "last"):
            out[name] = getattr(self, name).isoformat()
        out["detectors"] = list(self.detectors)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        return cls(
            service=str(d["service"]), series=str(d["series"]), stat=str(d["stat"]),
            onset=_time(d["onset"]), first=_time(d["first"]), last=_time(d["last"]),
            windows=int(d["windows"]), observed=_num(d["observed"]),
            expected=_num(d["expected"]), lower=_num(d["lower"]), upper=_num(d["upper"]),
            score=_num(d["score"]), detectors=tuple(str(n) for n in d["detectors"]),
            severity="critical" if d.get("severity") == "critical" else "warning",
            origin=bool(d.get("origin", False)), streak=int(d.get("streak", 1)),
            longest=int(d.get("longest", 1)))


@dataclass
class Incident:
    """Anomalies that overlap in time (within the grouping gap), across series and services."""

    id: str
    status: Literal["open", "resolved"]
    started: datetime  # first anomalous window start
    last_seen: datetime  # latest anomalous window start
    resolved: datetime | None
    origin: str  # the likely origin service (mad.detect.origin)
    services: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)  # Anomaly.key values, first seen first
    anomalies: int = 0
    peak_score: float = 0.0
    severity: Severity = "warning"
    evidence: list[Evidence] = field(default_factory=list)  # one per series, by onset

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("started", "last_seen", "resolved"):
            value = getattr(self, name)
            out[name] = value.isoformat() if value is not None else None
        out["evidence"] = [e.to_dict() for e in self.evidence]
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


def _time(value: Any) -> datetime:
    t = datetime.fromisoformat(str(value))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _num(value: Any) -> float:
    """JSON has no NaN: orjson writes it as null, which reads back as NaN."""
    return math.nan if value is None else float(value)
