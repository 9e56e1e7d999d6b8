"""Group anomalies into incidents and decide which state changes deserve an alert.

Pure logic: anomalies in, `IncidentChange`s out; the caller persists `state()`.

Rules (docs/detection.md, "Incidents"):
- An anomaly joins the open incident whose span `[started - gap, last_seen + gap]` holds its
  window start (the one seen last when several do), whatever its service or series: a slow
  database shows in accounts, payments and the gateway at once and is one problem to page
  about, not three. Otherwise it opens a new incident.
- Anomalies are applied in time order; all anomalies of one window start are applied
  together, then each touched incident emits at most one change: `opened` when it is new,
  else `escalated` when its severity rose or a service joined. More anomalies on services
  already named change the record but send nothing: operators want few alerts.
- The origin is named from each series' change onset and the call graph
  (`mad.detect.origin`): the deepest service whose own signals changed first, since callers
  inherit their callees' failures and their symptom often crosses a threshold first. Each
  incident keeps its `evidence`, one record per series (its first anomalous window's values,
  the estimated onset, how many windows), from which the origin is recomputed after every
  anomaly; it may move as long as the incident grows.
- With `confirm_windows` N > 1 (the pipeline's default is 2) an incident is alerted only once
  its anomalies span N window starts, or at once when a threshold rule fired (rules already
  wait for consecutive windows) or an anomaly scored at least `confirm_score` (0.8 in the
  pipeline); one that goes quiet unconfirmed is dropped without an alert, its anomalies stay
  in md-anomalies. A lone weak anomaly in one window is the commonest false alarm on `mad
  bench incidents` (docs/detection.md).
- `advance(now)` resolves incidents whose last anomaly is more than `resolve_after_s` before
  `now`. `now` is the data clock (the end of the latest window processed), so a backfill
  resolves incidents exactly as a live run would.
- Ids come from the content, `inc-<started %Y%m%dT%H%M>-<origin>`, the origin when the
  incident is first alerted (after its whole first window start is applied, so a gateway
  anomaly sorted before the payments one of the same minute does not name it), with `-2`,
  `-3`, ... on collision, so replaying the same anomalies gives the same ids and alert dedup
  keys. An id never changes after it was sent, even when the origin moves later (the alert
  summary then says `origin now <service>`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mad.detect.model import Anomaly, Change, Evidence, Incident, IncidentChange
from mad.detect.origin import choose_origin as choose_origin  # the rule, for callers
from mad.detect.origin import origin_of

_WINDOW_S = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}
_RANK = {"warning": 0, "critical": 1}
RECENT_IDS_S = 7 * 86400.0  # resolved ids kept this long to avoid reusing them
CONFIRM_WINDOWS = 1  # distinct window starts before an incident is alerted (rules: at once)
CONFIRM_SCORE = 2.0  # an anomaly scoring this much confirms at once (above 1: never)


def window_seconds(window: str) -> float:
    """Length of an aggregate window (`1m`, `5m`, `1h`); unknown names count as one minute."""
    return _WINDOW_S.get(window, 60.0)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class _Touched:
    """An incident one window start touched, and what it was before."""

    item: _Open
    new: bool
    rank_before: int
    services: set[str]
    anomalies: list[Anomaly] = field(default_factory=list)

    def cause(self) -> Anomaly:
        """The anomaly that best explains the change: a service that joined (the origin
        first), then a higher severity, then the higher score."""
        origin = self.item.incident.origin

        def weight(a: Anomaly) -> tuple[bool, bool, bool, float]:
            joined = a.service not in self.services
            return (joined and a.service == origin, joined,
                    _RANK.get(a.severity, 0) > self.rank_before,
                    a.score if a.score == a.score else 0.0)

        return max(self.anomalies, key=weight)


@dataclass
class _Open:
    """An open incident and what the tracker needs besides the shared record."""

    incident: Incident
    first_seen: dict[str, datetime] = field(default_factory=dict)
    window_s: float = 60.0
    seq: int = 0  # seq of the last change sent
    confirmed: bool = True  # False while it waits for more evidence (nothing sent yet)
    windows: set[datetime] = field(default_factory=set)  # window starts seen while unconfirmed


class IncidentTracker:
    """Turns batches of anomalies into incident changes; one per alert to send."""

    def __init__(self, gap_s: float, resolve_after_s: float,
                 confirm_windows: int = CONFIRM_WINDOWS,
                 confirm_score: float = CONFIRM_SCORE) -> None:
        self.gap = timedelta(seconds=gap_s)
        self.resolve_after = timedelta(seconds=resolve_after_s)
        self.confirm = max(1, int(confirm_windows))
        self.confirm_score = float(confirm_score)
        self._open: list[_Open] = []
        self._recent: dict[str, datetime] = {}  # resolved id -> its started time

    def configured_as(self, other: IncidentTracker) -> IncidentTracker:
        """This tracker's incidents under `other`'s grouping and confirmation settings (a
        restored tracker follows settings changed since it was saved)."""
        self.gap, self.resolve_after = other.gap, other.resolve_after
        self.confirm, self.confirm_score = other.confirm, other.confirm_score
        return self

    # -- changes -----------------------------------------------------------------------

    def observe(self, anomalies: Sequence[Anomaly]) -> list[IncidentChange]:
        """Apply a batch (any order); return the changes to alert on, in time order."""
        ordered = sorted(
            ((_utc(a.window_start), a) for a in anomalies),
            key=lambda pair: (pair[0], pair[1].service, pair[1].series, pair[1].stat),
        )
        changes: list[IncidentChange] = []
        i = 0
        while i < len(ordered):
            t = ordered[i][0]
            group = []
            while i < len(ordered) and ordered[i][0] == t:
                group.append(ordered[i][1])
                i += 1
            changes.extend(self._apply_window(t, group))
        return changes

    def advance(self, now: datetime) -> list[IncidentChange]:
        """Resolve incidents quiet for longer than `resolve_after_s` before `now`."""
        now = _utc(now)
        changes = []
        still = []
        for item in self._open:
            inc = item.incident
            if now - inc.last_seen > self.resolve_after and not item.confirmed:
                continue  # never confirmed, never sent: its anomalies stay in md-anomalies
            if now - inc.last_seen > self.resolve_after:
                inc.status = "resolved"
                inc.resolved = now
                item.seq += 1
                changes.append(IncidentChange(_snapshot(inc), "resolved", None, item.seq))
                self._recent[inc.id] = inc.started
            else:
                still.append(item)
        self._open = still
        horizon = now - timedelta(seconds=RECENT_IDS_S)
        self._recent = {k: v for k, v in self._recent.items() if v >= horizon}
        return changes

    def open_incidents(self) -> list[Incident]:
        """Open incidents that were confirmed (and so alerted)."""
        return [_snapshot(item.incident) for item in self._open if item.confirmed]

    # -- one window start --------------------------------------------------------------

    def _apply_window(self, t: datetime, group: list[Anomaly]) -> list[IncidentChange]:
        touched: dict[int, _Touched] = {}
        for a in group:
            item = self._find(t)
            new = item is None
            if item is None:
                item = self._start(t, a)
            seen = touched.get(id(item))
            if seen is None:
                inc = item.incident
                seen = touched[id(item)] = _Touched(
                    item, new, -1 if new else _RANK.get(inc.severity, 0),
                    set() if new else set(inc.services),
                )
            seen.anomalies.append(a)
            self._add(item, t, a)
        changes = []
        for seen in touched.values():
            item, inc = seen.item, seen.item.incident
            if not item.confirmed:
                item.windows.add(t)
                rule = any(d.startswith("rule:") for a in seen.anomalies for d in a.detectors)
                strong = any(a.score >= self.confirm_score for a in seen.anomalies)
                if not rule and not strong and len(item.windows) < self.confirm:
                    continue
                item.confirmed, item.windows = True, set()
                seen.services, seen.rank_before = set(), -1
                change: Change = "opened"
                self._name(item)
            elif seen.new:
                change = "opened"
                self._name(item)
            elif (_RANK.get(inc.severity, 0) > seen.rank_before
                  or set(inc.services) - seen.services):
                change = "escalated"
                item.seq += 1
            else:
                continue
            changes.append(IncidentChange(_snapshot(inc), change, seen.cause(), item.seq))
        return changes

    def _find(self, t: datetime) -> _Open | None:
        best = None
        for item in self._open:
            inc = item.incident
            if inc.started - self.gap <= t <= inc.last_seen + self.gap and (
                best is None or inc.last_seen > best.incident.last_seen
            ):
                best = item
        return best

    def _start(self, t: datetime, a: Anomaly) -> _Open:
        base = f"inc-{t:%Y%m%dT%H%M}-{a.service}"
        taken = set(self._recent) | {item.incident.id for item in self._open}
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}-{n}"
        inc = Incident(id=ident, status="open", started=t, last_seen=t, resolved=None,
                       origin=a.service)
        item = _Open(inc, window_s=window_seconds(a.window), confirmed=self.confirm == 1)
        self._open.append(item)
        return item

    def _name(self, item: _Open) -> None:
        """Name an incident about to be alerted first after its origin (see module doc)."""
        inc = item.incident
        base = f"inc-{inc.started:%Y%m%dT%H%M}-{inc.origin}"
        taken = set(self._recent) | {o.incident.id for o in self._open if o is not item}
        ident, n = base, 1
        while ident in taken:
            n += 1
            ident = f"{base}-{n}"
        inc.id = ident

    @staticmethod
    def _add(item: _Open, t: datetime, a: Anomaly) -> None:
        inc = item.incident
        inc.anomalies += 1
        inc.started = min(inc.started, t)
        inc.last_seen = max(inc.last_seen, t)
        if a.score > inc.peak_score:
            inc.peak_score = float(a.score)
        if _RANK.get(a.severity, 0) > _RANK.get(inc.severity, 0):
            inc.severity = "critical"
        if a.key not in inc.series:
            inc.series.append(a.key)
        if a.service not in item.first_seen or t < item.first_seen[a.service]:
            item.first_seen[a.service] = t
        if a.service not in inc.services:
            inc.services.append(a.service)
        inc.services.sort(key=lambda s: (item.first_seen[s], s))
        _note(inc, t, a)
        inc.origin, key = origin_of(inc.evidence, item.window_s)
        inc.evidence = [e if e.origin == (e.key == key) else
                        dataclasses.replace(e, origin=e.key == key) for e in inc.evidence]

    # -- state -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Plain JSON-able state: open incidents and the ids still reserved."""
        return {
            "version": 2,
            "gap_s": self.gap.total_seconds(),
            "resolve_after_s": self.resolve_after.total_seconds(),
            "confirm_windows": self.confirm,
            "confirm_score": self.confirm_score,
            "open": [
                {
                    "incident": item.incident.to_dict(),
                    "first_seen": {s: t.isoformat() for s, t in item.first_seen.items()},
                    "window_s": item.window_s,
                    "seq": item.seq,
                    "confirmed": item.confirmed,
                    "windows": sorted(t.isoformat() for t in item.windows),
                }
                for item in self._open
            ],
            "recent": {k: v.isoformat() for k, v in self._recent.items()},
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> IncidentTracker:
        """Rebuild a tracker from `state()`; it then behaves as one that never stopped."""
        tracker = cls(float(d["gap_s"]), float(d["resolve_after_s"]),
                      int(d.get("confirm_windows", 1)),
                      float(d.get("confirm_score", CONFIRM_SCORE)))
        for raw in d.get("open", []):
            rec = dict(raw["incident"])
            for name in ("started", "last_seen", "resolved"):
                rec[name] = _utc(datetime.fromisoformat(rec[name])) if rec[name] else None
            rec["evidence"] = [Evidence.from_dict(e) for e in rec.get("evidence") or []]
            inc = Incident(**rec)
            first = {s: _utc(datetime.fromisoformat(t)) for s, t in raw["first_seen"].items()}
            if not inc.evidence:  # saved before incidents kept evidence (state version 1)
                inc.evidence = _evidence_of(inc, first)
            windows = {_utc(datetime.fromisoformat(t)) for t in raw.get("windows", [])}
            tracker._open.append(_Open(inc, first, float(raw["window_s"]), int(raw["seq"]),
                                       bool(raw.get("confirmed", True)), windows))
        tracker._recent = {
            k: _utc(datetime.fromisoformat(v)) for k, v in d.get("recent", {}).items()
        }
        return tracker


def _note(inc: Incident, t: datetime, a: Anomaly) -> None:
    """Add an anomaly to the incident's evidence: a new series gets its record, a known one
    counts one more window (a rule and a detector on one window count once) and how many of
    them came in a row."""
    onset = min(_utc(a.onset), t) if a.onset is not None else t
    score = float(a.score) if a.score == a.score else 0.0
    for i, e in enumerate(inc.evidence):
        if e.key != a.key:
            continue
        if t < e.first:  # a late anomaly: the change is seen from it on
            e = dataclasses.replace(e, first=t, observed=a.observed, expected=a.expected,
                                    lower=a.lower, upper=a.upper, detectors=a.detectors,
                                    windows=e.windows + 1)
        elif t == e.first:
            e = dataclasses.replace(e, detectors=tuple(dict.fromkeys(
                (*e.detectors, *a.detectors))))
        elif t != e.last:
            streak = e.streak + 1 if t == e.last + _step(a) else 1
            e = dataclasses.replace(e, windows=e.windows + 1, streak=streak,
                                    longest=max(e.longest, streak))
        if a.severity == "critical":
            e = dataclasses.replace(e, severity="critical")
        inc.evidence[i] = dataclasses.replace(e, onset=min(e.onset, onset),
                                              last=max(e.last, t),
                                              score=score if e.score != e.score
                                              else max(e.score, score))
        break
    else:
        inc.evidence.append(Evidence(
            service=a.service, series=a.series, stat=a.stat, onset=onset, first=t, last=t,
            windows=1, observed=a.observed, expected=a.expected, lower=a.lower, upper=a.upper,
            score=score, detectors=a.detectors, severity=a.severity))
    inc.evidence.sort(key=lambda e: (e.onset, e.first, e.key))


def _step(a: Anomaly) -> timedelta:
    return timedelta(seconds=window_seconds(a.window))


def _evidence_of(inc: Incident, first_seen: dict[str, datetime]) -> list[Evidence]:
    """Evidence for an incident saved without it: each series from its service's first
    anomaly, one window, values unknown."""
    nan = float("nan")
    out = []
    for key in inc.series:
        service, _, rest = key.partition("/")
        series, _, stat = rest.rpartition("/")
        when = first_seen.get(service, inc.started)
        out.append(Evidence(service, series, stat, when, when, when, 1, nan, nan, nan, nan,
                            nan, ()))
    out.sort(key=lambda e: (e.onset, e.first, e.key))
    return out


def _snapshot(inc: Incident) -> Incident:
    return dataclasses.replace(inc, services=list(inc.services), series=list(inc.series),
                               evidence=list(inc.evidence))
