"""Operator actions on detection: feedback on incidents, snoozes and maintenance windows.

The API the CLI (`mad detect feedback`, `mad detect silence ...`) and the dashboard call.
Every function checks what it is given (a bad value is a `BadAction`, one line), opens the
state database of `settings`, does one thing and disposes of the engine. Times are
timezone-aware UTC datetimes.

- Feedback: thumbs up or down on an incident, kept as labels (the latest one wins) and
  exported with the incident's window, times, origin, services and series for scoring.
- Silences: an incident or a `service/series` snoozed until a time, or a maintenance window
  of a service (which may start later). A silence covers an incident when the incident is
  snoozed, when any of its services is in maintenance, or when all of its series are
  snoozed.
- `StateSilencer` is the alert dispatcher's `Silencer` on the same tables: a change of a
  covered incident is sent to no sink and recorded as silenced with the reason. A silence
  covers a change when it is active now, or was active at the change's own time (the
  anomaly's window, the resolution), so an alert held back during a window is not sent
  when the window ends. Anomalies are recorded whatever the silences say.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine

from mad.catalog import SERVICES, service_view
from mad.config import Settings
from mad.detect.model import IncidentChange
from mad.errors import TerminalError
from mad.state import OperatorStore, open_state

Verdict = Literal["up", "down"]
Kind = Literal["incident", "series", "maintenance"]

VERDICTS = ("up", "down")
MAX_TEXT = 500  # characters of a note or a reason
MAX_USER = 128
MAX_WINDOW = timedelta(days=30)
DERIVED_SERIES = ("events", "error_rate")  # series the ETL derives from every service
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BadAction(TerminalError):
    """An operator action with a value that cannot be used (named in the message)."""


# -- checks -----------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d` (or `90s`) as a timedelta; anything else is a BadAction."""
    m = _DURATION.match(text or "")
    if m is None or int(m.group(1)) == 0:
        raise BadAction(f"bad duration {text!r}: expected a number and a unit, e.g. 30m, 2h "
                        "or 1d")
    return timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2)])


def parse_time(text: str) -> datetime:
    """An ISO-8601 time with an offset (`2026-12-02T18:00:00+00:00`, `...Z`) in UTC."""
    try:
        t = datetime.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        raise BadAction(f"bad time {text!r}: expected ISO-8601 with an offset, e.g. "
                        "2026-12-02T18:00:00+00:00") from None
    if t.tzinfo is None:
        raise BadAction(f"time {text!r} has no offset: add one, e.g. +00:00 or Z")
    return t.astimezone(UTC)


def _aware(t: Any, name: str) -> datetime:
    if not isinstance(t, datetime):
        raise BadAction(f"{name} must be a datetime, not {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise BadAction(f"{name} {t.isoformat()} has no timezone")
    return t.astimezone(UTC)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadAction(f"{name} must be text")
    if len(value) > MAX_TEXT:
        raise BadAction(f"{name} is {len(value)} characters long; at most {MAX_TEXT}")
    return value


def _user(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadAction("user must be a non-empty name")
    if len(value) > MAX_USER or any(not c.isprintable() for c in value):
        raise BadAction(f"user must be at most {MAX_USER} printable characters")
    return value.strip()


def _service(value: Any) -> str:
    if value not in SERVICES:
        raise BadAction(f"unknown service {value!r} (known: {', '.join(SERVICES)})")
    return str(value)


def _series_target(value: Any) -> str:
    """`service/series` with a catalog service and one of its series (or a derived one)."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise BadAction(f"series must be SERVICE/SERIES, e.g. payments/latency_ms, not "
                        f"{value!r}")
    service, series = value.split("/")
    _service(service)
    known = (*service_view(service).series, *DERIVED_SERIES)
    if series not in known:
        raise BadAction(f"unknown series {series!r} of {service} (known: {', '.join(known)})")
    return value


def _window(start: datetime, end: datetime, now: datetime) -> None:
    if end <= start:
        raise BadAction(f"the end {end.isoformat()} must come after the start "
                        f"{start.isoformat()}")
    if end - start > MAX_WINDOW:
        raise BadAction(f"a window is at most {MAX_WINDOW.days} days long, not "
                        f"{(end - start).total_seconds() / 86400:.1f}")
    if end <= now:
        raise BadAction(f"the end {end.isoformat()} has passed already")


def _incident_id(store: OperatorStore, value: Any) -> dict[str, Any]:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise BadAction(f"bad incident id {value!r}")
    incident = store.incident(value)
    if incident is None:
        raise BadAction(f"no incident {value!r} (see `mad detect status`)")
    return incident


def _open(settings: Settings) -> Engine:
    return open_state(settings.state_url)


# -- feedback ---------------------------------------------------------------------------


def give_feedback(settings: Settings, incident_id: str, verdict: Verdict, note: str = "",
                  user: str = "operator") -> None:
    """Label an incident up (a real problem) or down (not one); the latest label wins."""
    if verdict not in VERDICTS:
        raise BadAction(f"verdict must be up or down, not {verdict!r}")
    note, user = _text(note, "note"), _user(user)
    engine = _open(settings)
    try:
        store = OperatorStore(engine)
        _incident_id(store, incident_id)
        store.add_feedback(incident_id, verdict, note, user, datetime.now(UTC))
    finally:
        engine.dispose()


def feedback(settings: Settings, incident_ids: Sequence[str] | None = None,
             engine: Engine | None = None) -> dict[str, dict[str, Any]]:
    """incident id -> its latest label `{"verdict", "note", "user", "at"}` (of the given
    incidents, or of all labelled ones); on `engine` when given (a reader's, kept open:
    nothing is created then)."""
    if incident_ids is not None and not all(isinstance(i, str) for i in incident_ids):
        raise BadAction("incident ids must be text")
    if engine is not None:
        return OperatorStore(engine).latest_feedback(incident_ids)
    opened = _open(settings)
    try:
        return OperatorStore(opened).latest_feedback(incident_ids)
    finally:
        opened.dispose()


def export_feedback(settings: Settings) -> list[dict[str, Any]]:
    """One record per labelled incident, for scoring: `incident_id`, `verdict`, `note`,
    `user`, `at` and the incident's `window`, `started`, `last_seen`, `origin`, `services`
    and `series` (None when the incident is no longer in the state database)."""
    engine = _open(settings)
    try:
        store = OperatorStore(engine)
        out = []
        for incident_id, label in sorted(store.latest_feedback().items()):
            inc = store.incident(incident_id) or {}
            out.append({"incident_id": incident_id, **label,
                        **{k: inc.get(k) for k in ("window", "started", "last_seen", "origin",
                                                   "services", "series")}})
        return out
    finally:
        engine.dispose()


# -- silences ---------------------------------------------------------------------------


def snooze(settings: Settings, kind: Literal["incident", "series"], target: str,
           until: datetime, reason: str = "", user: str = "operator") -> int:
    """Silence an incident (`target` its id) or a series (`service/series`) from now until
    `until`; returns the silence id."""
    now = datetime.now(UTC)
    until = _aware(until, "until")
    reason, user = _text(reason, "reason"), _user(user)
    if kind not in ("incident", "series"):
        raise BadAction(f"a snooze is of an incident or a series, not {kind!r}")
    _window(now, until, now)
    engine = _open(settings)
    try:
        store = OperatorStore(engine)
        if kind == "incident":
            _incident_id(store, target)
        else:
            _series_target(target)
        return store.add_silence(kind, target, now, until, reason, user)
    finally:
        engine.dispose()


def add_maintenance(settings: Settings, service: str, start: datetime, end: datetime,
                    reason: str = "", user: str = "operator") -> int:
    """A maintenance window of `service` (it may start later); returns the silence id."""
    now = datetime.now(UTC)
    start, end = _aware(start, "start"), _aware(end, "end")
    reason, user = _text(reason, "reason"), _user(user)
    _service(service)
    _window(start, end, now)
    engine = _open(settings)
    try:
        return OperatorStore(engine).add_silence("maintenance", service, start, end, reason,
                                                 user)
    finally:
        engine.dispose()


def silences(settings: Settings, active_at: datetime | None = None,
             include_expired: bool = False) -> list[dict[str, Any]]:
    """Silences active at `active_at`; else those not over yet (active or to come), or all
    with `include_expired`. Each: `id`, `kind`, `target`, `start`, `end`, `reason`, `user`,
    `created_at`."""
    at = _aware(active_at, "active_at") if active_at is not None else None
    engine = _open(settings)
    try:
        store = OperatorStore(engine)
        if at is not None:
            return store.silences(active_at=at)
        return store.silences(ends_after=None if include_expired else datetime.now(UTC))
    finally:
        engine.dispose()


def remove_silence(settings: Settings, silence_id: int) -> None:
    """Delete a silence (alerts it covered stay silenced; later ones are sent)."""
    if isinstance(silence_id, bool) or not isinstance(silence_id, int) or silence_id <= 0:
        raise BadAction(f"bad silence id {silence_id!r}")
    engine = _open(settings)
    try:
        if not OperatorStore(engine).remove_silence(silence_id):
            raise BadAction(f"no silence {silence_id} (see `mad detect silence list --all`)")
    finally:
        engine.dispose()


def silenced_by(settings: Settings, incident: Mapping[str, Any]) -> str | None:
    """Why `incident` (a dict as `DetectStore.incidents` returns it) is silenced now, or
    None when its alerts would be sent."""
    return silenced_reasons(settings, [incident]).get(str(incident.get("id", "")))


def silenced_reasons(settings: Settings, incidents: Sequence[Mapping[str, Any]],
                     engine: Engine | None = None) -> dict[str, str | None]:
    """`silenced_by` of many incidents with one read: incident id -> reason or None (on
    `engine` when given, as `feedback`)."""
    now = datetime.now(UTC)
    if engine is not None:
        active = OperatorStore(engine).silences(active_at=now)
    else:
        opened = _open(settings)
        try:
            active = OperatorStore(opened).silences(active_at=now)
        finally:
            opened.dispose()
    return {str(i.get("id", "")): covering(active, str(i.get("id", "")),
                                           list(i.get("services") or []),
                                           list(i.get("series") or []), [now])
            for i in incidents}


def silenced_count(settings: Settings) -> int:
    """How many alerts were silenced (for status output)."""
    engine = _open(settings)
    try:
        return OperatorStore(engine).silenced_count()
    finally:
        engine.dispose()


# -- what a silence covers (pure) -------------------------------------------------------


def _until(s: Mapping[str, Any]) -> str:
    return f"{s['end']:%Y-%m-%d %H:%M} UTC"


def _said(s: Mapping[str, Any]) -> str:
    return f" by {s['user']}" + (f": {s['reason']}" if s["reason"] else "")


def covering(silences: Sequence[Mapping[str, Any]], incident_id: str, services: Sequence[str],
             series: Sequence[str], times: Sequence[datetime]) -> str | None:
    """The reason the silences silence an incident at any of `times`, or None.

    `series` are the incident's `service/series/stat` keys; a series snooze names
    `service/series`. The incident's own snooze comes first, then maintenance, then series.
    """
    def active(s: Mapping[str, Any]) -> bool:
        return any(s["start"] <= t < s["end"] for t in times)

    live = [s for s in silences if active(s)]
    for s in live:
        if s["kind"] == "incident" and s["target"] == incident_id:
            return f"incident snoozed until {_until(s)} (silence {s['id']}){_said(s)}"
    for s in live:
        if s["kind"] == "maintenance" and s["target"] in services:
            return (f"maintenance of {s['target']} until {_until(s)} "
                    f"(silence {s['id']}){_said(s)}")
    snoozed = {s["target"]: s for s in live if s["kind"] == "series"}
    names = {"/".join(key.split("/")[:2]) for key in series}
    if names and names <= set(snoozed):
        last = max((snoozed[n] for n in names), key=lambda s: s["end"])
        ids = ", ".join(str(snoozed[n]["id"]) for n in sorted(names))
        return (f"all its series snoozed ({', '.join(sorted(names))}), until {_until(last)} "
                f"at the latest (silence {ids})")
    return None


def change_time(change: IncidentChange) -> datetime:
    """When a change happened on the data clock: its anomaly's window, or the resolution."""
    if change.anomaly is not None:
        return change.anomaly.window_start
    inc = change.incident
    return inc.resolved or inc.last_seen


class StateSilencer:
    """The dispatcher's `Silencer` on the state database (see the module doc)."""

    def __init__(self, engine: Engine,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = OperatorStore(engine)
        self.clock = clock

    def silence(self, changes: Sequence[IncidentChange]) -> dict[str, str]:
        if not changes:
            return {}
        now = self.clock()
        since = min([now, *(change_time(c) for c in changes)])
        known = self.store.silences(ends_after=since)
        if not known:
            return {}
        held: dict[str, str] = {}
        for c in changes:
            inc = c.incident
            why = covering(known, inc.id, inc.services, inc.series, [now, change_time(c)])
            if why is not None:
                held[c.dedup_key] = why
        if held:
            by_key = {c.dedup_key: c for c in changes}
            self.store.record_silenced(
                (key, by_key[key].incident.id, by_key[key].change, why)
                for key, why in held.items())
        return held
