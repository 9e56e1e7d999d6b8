"""Anomalies: the incident timeline; each incident with its series (observed line, expected
band, anomaly markers), contributing detectors, origin and its evidence (per series, the
change and when it began), alerts sent; and the operator's
actions: thumbs up or down, snoozing an incident or a series, maintenance windows per
service (`mad.query.incidents` to read, `mad.detect.operator` to act)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from mad.config import Settings
from mad.dashboard import charts
from mad.dashboard.ui import EMPTY, TimeRange, frame, held_note, number, one_line, read, when

COLUMNS = ("id", "status", "severity", "origin", "services", "started", "last_seen",
           "resolved", "anomalies", "peak_score", "feedback", "silenced", "alerts_sent")
SNOOZE_FOR: dict[str, timedelta] = {
    "1 hour": timedelta(hours=1), "4 hours": timedelta(hours=4),
    "24 hours": timedelta(hours=24), "7 days": timedelta(days=7),
}
CHARTS = 4  # series charts shown at first: those with the most anomalous windows
EVIDENCE_COLUMNS = ("origin", "service", "series", "change", "onset", "first anomaly",
                    "windows", "score", "detectors")
VERDICTS = {"up": "Real incident", "down": "False alarm"}
ICONS = {"up": ":material/thumb_up:", "down": ":material/thumb_down:"}


def label(incident: Mapping[str, Any]) -> str:
    """How an incident is named in the picker."""
    return (f"{incident['id']} · {incident.get('origin', '?')} · "
            f"{incident.get('severity', '')} · {when(incident.get('started'))}")


def verdict_of(feedback: Any) -> str | None:
    """The verdict of an incident's feedback field (a dict or a bare verdict)."""
    if isinstance(feedback, Mapping):
        return str(feedback.get("verdict")) if feedback.get("verdict") else None
    return str(feedback) if feedback else None


def _clock(value: Any) -> str:
    """An evidence time (ISO-8601 text in the stored JSON) as shown on the page."""
    if isinstance(value, str) and value:
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    return when(value)


def _change(e: Mapping[str, Any]) -> str:
    """What a series did at its first anomalous window: against a rule's threshold, or
    against its expected value and normal band."""
    observed, expected = number(e.get("observed")), number(e.get("expected"))
    if any(str(d).startswith("rule:") for d in e.get("detectors") or []):
        return f"{observed} (rule threshold {expected})"
    return (f"{observed} (expected {expected}, normal {number(e.get('lower'))}.."
            f"{number(e.get('upper'))})")


def evidence_rows(evidence: list[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """An incident's evidence as table rows, earliest onset first; `origin` marks the series
    whose onset named the origin."""
    return [{"origin": "✓" if e.get("origin") else "", "service": e.get("service"),
             "series": f"{e.get('series')} {e.get('stat')}", "change": _change(e),
             "onset": _clock(e.get("onset")), "first anomaly": _clock(e.get("first")),
             "windows": e.get("windows"), "score": e.get("score"),
             "detectors": ", ".join(str(d) for d in e.get("detectors") or [])}
            for e in evidence or []]


def table(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Incidents as table rows: lists joined, feedback as its verdict."""
    rows = []
    for inc in incidents:
        row = {k: inc.get(k) for k in COLUMNS}
        row["services"] = ", ".join(inc.get("services") or [])
        row["feedback"] = verdict_of(inc.get("feedback")) or ""
        row["silenced"] = str(inc["silenced"]) if inc.get("silenced") else ""
        rows.append(row)
    return rows


def render(settings: Settings, period: TimeRange) -> None:
    q = read("mad.query.incidents", importlib.import_module, "mad.query.incidents")
    if q is None:
        return
    found = read("the incidents", q.incidents, settings, period.start, period.end)
    if found is None:
        return
    if not found:
        st.info(f"No incidents in the {period.label}. " + EMPTY)
    else:
        st.altair_chart(charts.timeline(frame(found, ["id", "origin", "severity", "status",
                                                       "started", "last_seen"])),
                        width="stretch")
        st.dataframe(frame(table(found), COLUMNS), hide_index=True, width="stretch")
        by_label = {label(inc): inc for inc in found}
        chosen = st.selectbox("Incident", list(by_label), key="inc_pick")
        if chosen is not None:
            detail(settings, q, by_label[chosen])
    st.divider()
    maintenance(settings)


def detail(settings: Settings, q: Any, incident: Mapping[str, Any]) -> None:
    """One incident: facts, series charts, detectors, and the operator's actions."""
    data = read(f"incident {incident['id']}", q.incident_detail, settings, incident["id"])
    if data is None:
        return
    inc = data.get("incident") or incident
    found = data.get("anomalies") or []
    detectors = sorted({d for a in found for d in (a.get("detectors") or [])})
    cols = st.columns(4)
    cols[0].metric("Origin", str(inc.get("origin", "–")))
    cols[1].metric("Anomalies", number(inc.get("anomalies", len(found))))
    cols[2].metric("Alerts sent", number(incident.get("alerts_sent")))
    cols[3].metric("Peak score", number(inc.get("peak_score")))
    st.markdown(f"**Contributing detectors:** {', '.join(detectors) or '–'}  \n"
                f"**Services:** {', '.join(inc.get('services') or []) or '–'} · "
                f"**Status:** {inc.get('status', '–')}")
    evidence = evidence_rows(inc.get("evidence"))
    if evidence:
        st.markdown("**Evidence** (per series: its first anomalous window, and when it began "
                    "to leave its normal band; the origin is the deepest service whose own "
                    "change began first)")
        st.dataframe(frame(evidence, EVIDENCE_COLUMNS), hide_index=True, width="stretch",
                     key="inc_evidence")
    for problem in data.get("errors") or []:
        st.warning(str(problem))
    held_note(data.get("held"))
    series = {str(item["key"]): item for item in data.get("series") or [] if item.get("points")}
    flagged = sorted(series, key=lambda k: -sum(bool(p.get("anomaly"))
                                                 for p in series[k]["points"]))
    shown = st.multiselect("Series", flagged, default=flagged[:CHARTS], key="inc_series")
    for i in range(0, len(shown), 2):
        for col, name in zip(st.columns(2), shown[i:i + 2], strict=False):
            item = series[name]
            source = {str(p.get("band_source")) for p in item["points"]} - {"None"}
            col.altair_chart(charts.band(frame(item["points"]),
                                         f"{name} (band: {', '.join(sorted(source))})"),
                             width="stretch")
    names = list(series)
    actions(settings, incident, names)


def actions(settings: Settings, incident: Mapping[str, Any], series: list[str]) -> None:
    """Thumbs up or down and snoozes of the incident or one of its series; what is stored."""
    op = read("mad.detect.operator", importlib.import_module, "mad.detect.operator")
    if op is None:
        return
    ident = str(incident["id"])
    st.subheader("Operator actions")
    left, right = st.columns(2)
    with left:
        up, down = st.columns(2)
        verdict = None
        if up.button(VERDICTS["up"], key="fb_up", icon=ICONS["up"], width="stretch"):
            verdict = "up"
        if down.button(VERDICTS["down"], key="fb_down", icon=ICONS["down"], width="stretch"):
            verdict = "down"
        if verdict is not None:
            act("feedback", op.give_feedback, settings, ident, verdict)
        stored = read("the feedback", op.feedback, settings, [ident]) or {}
        mine = stored.get(ident)
        if mine:
            verdict = str(mine.get("verdict"))
            st.success(f"Label: {VERDICTS.get(verdict, verdict).lower()} ({verdict}), by "
                       f"{mine.get('user', '?')} at {when(mine.get('at'))}",
                       icon=ICONS.get(verdict))
        else:
            st.caption("No label yet.")
    series = sorted({"/".join(name.split("/")[:2]) for name in series})
    with right, st.form("snooze", border=True):
        targets = [f"incident {ident}", *[f"series {s}" for s in series]]
        target = st.selectbox("Snooze", targets, key="sn_target")
        span = st.selectbox("For", list(SNOOZE_FOR), key="sn_for")
        reason = st.text_input("Reason", key="sn_reason", max_chars=200)
        if st.form_submit_button("Snooze"):
            kind, _, name = target.partition(" ")
            until = datetime.now(UTC) + SNOOZE_FOR[span]
            act("snooze", op.snooze, settings, kind, name, until, reason=reason)
    shown = read("the silences", op.silences, settings) or []
    mine = [s for s in shown if s.get("target") in (ident, *series)
            or (s.get("kind") == "maintenance" and s.get("target") in
                (incident.get("services") or []))]
    for silence in mine:
        st.info(f"Silenced until {when(silence.get('end'))}: "
                f"{silence.get('kind')} {silence.get('target')}"
                + (f" ({silence['reason']})" if silence.get("reason") else ""))
    if incident.get("silenced"):
        st.caption(f"Alerts of this incident are silenced: {incident['silenced']}")


def maintenance(settings: Settings) -> None:
    """Maintenance windows: add one per service; list those active or to come."""
    op = read("mad.detect.operator", importlib.import_module, "mad.detect.operator")
    if op is None:
        return
    st.subheader("Maintenance windows")
    st.caption("No alert is sent for a service in maintenance; anomalies are still recorded "
               "and shown as silenced.")
    from mad.catalog import SERVICES

    with st.form("maintenance", border=True):
        cols = st.columns(4)
        service = cols[0].selectbox("Service", list(SERVICES), key="mw_service")
        starts = cols[1].datetime_input("Starts (UTC)", key="mw_start",
                                        value=datetime.now(UTC).replace(tzinfo=None,
                                                                        microsecond=0))
        hours = cols[2].number_input("Hours", min_value=0.25, max_value=24.0 * 14, value=1.0,
                                     step=0.25, key="mw_hours")
        reason = cols[3].text_input("Reason", key="mw_reason", max_chars=200)
        if st.form_submit_button("Add maintenance window"):
            start = starts.replace(tzinfo=UTC) if starts.tzinfo is None else starts
            act("maintenance window", op.add_maintenance, settings, service, start,
                start + timedelta(hours=float(hours)), reason=reason)
    windows = [s for s in read("the silences", op.silences, settings) or []
               if s.get("kind") == "maintenance"]
    if windows:
        st.dataframe(frame(windows), hide_index=True, width="stretch")
    else:
        st.caption("No maintenance window active or to come.")


def act(what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """Do an operator action; a refusal (bad input, no database) is one line on the page."""
    try:
        fn(*args, **kwargs)
    except Exception as err:  # shown on the page, never raised
        st.error(f"{what} not stored: {one_line(err)}")
    else:
        st.toast(f"{what} stored")
