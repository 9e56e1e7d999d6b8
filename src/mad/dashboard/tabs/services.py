"""Services: per service, request rate, error rate and p50/p95/p99 latency over time at a
1m, 5m or 1h window, with anomaly markers (`mad.query.services`)."""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd
import streamlit as st

from mad.config import Settings
from mad.dashboard import charts
from mad.dashboard.ui import EMPTY, TimeRange, clamp, frame, held_note, read, source_note

WINDOWS = ("1m", "5m", "1h")
SHOWN_DAYS = {"1m": 2.0, "5m": 10.0, "1h": 31.0}
"""The longest stretch a window size is drawn over (a week of 1m windows is 60k points)."""


def default_window(period: TimeRange) -> str:
    """The smallest window size that draws the whole period."""
    days = (period.end - period.start).total_seconds() / 86400
    return next((w for w in WINDOWS if days <= SHOWN_DAYS[w]), "1h")
SUMMARY_COLUMNS = ("service", "request_rate", "error_rate", "p50_ms", "p95_ms", "p99_ms")


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest row of each service, by service name."""
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen = newest.get(row["service"])
        if seen is None or row["window_start"] >= seen["window_start"]:
            newest[row["service"]] = row
    return [newest[name] for name in sorted(newest)]


def render(settings: Settings, period: TimeRange) -> None:
    q = read("mad.query.services", importlib.import_module, "mad.query.services")
    if q is None:
        return
    names = read("the services", q.services, settings)
    if names is None:
        return
    if not names:
        st.info(EMPTY)
        return
    top = st.columns([1, 3])
    fitting = default_window(period)
    window = top[0].segmented_control("Window", WINDOWS, default=fitting,
                                      key="svc_window") or fitting
    service = top[1].selectbox("Service", names, key="svc_service")
    limit = min(SHOWN_DAYS[window], getattr(q, "MAX_DAYS", {}).get(window, SHOWN_DAYS[window]))
    if clamp(period, limit) != period:
        period = clamp(period, limit)
        st.caption(f"{window} windows: showing the {period.label}; pick a larger window "
                   "for a longer range.")
    rows = read("the service metrics", q.service_metrics, settings, window,
                period.start, period.end)
    if rows is None:
        return
    held_note(getattr(rows, "held", None))
    source_note(getattr(rows, "source", None))
    if not rows:
        st.info(f"No {window} aggregates in the {period.label}. " + EMPTY)
        return
    st.subheader(f"Latest {window} window per service")
    st.dataframe(frame(latest(rows), SUMMARY_COLUMNS), hide_index=True, width="stretch")
    found = read("the anomalies", q.anomalies, settings, period.start, period.end,
                 service=service, window=window) or []
    markers = frame(found)
    if not markers.empty and "window_start" in markers.columns:
        markers = markers[["window_start"]].drop_duplicates()
    else:
        markers = pd.DataFrame()
    mine = frame([r for r in rows if r["service"] == service])
    st.subheader(f"{service}: {len(found)} anomalous window(s) in the {period.label}")
    if mine.empty:
        st.caption(f"No {window} windows for {service} in the {period.label}.")
        return
    left, right = st.columns(2)
    left.altair_chart(charts.lines(mine, "window_start", ["request_rate"], "Requests per second",
                                   markers=markers), width="stretch")
    right.altair_chart(charts.lines(mine, "window_start", ["error_rate"], "Error rate",
                                    markers=markers), width="stretch")
    st.altair_chart(charts.lines(mine, "window_start", ["p50_ms", "p95_ms", "p99_ms"],
                                 "Latency (ms)", markers=markers, y_title="ms"),
                    width="stretch")
