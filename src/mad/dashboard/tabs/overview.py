"""Overview: events in and out per stage, stream lag, ETL backlog, rates, compression,
rejected and quarantined counts by reason, component health and restarts
(`mad.query.overview`)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import streamlit as st

from mad.config import Settings
from mad.dashboard import charts
from mad.dashboard.ui import (
    EMPTY,
    TimeRange,
    bucket_for,
    frame,
    number,
    read,
    seconds,
    when,
)

COMPONENT_COLUMNS = ("name", "status", "pid", "restarts", "last_exit", "url", "detail",
                     "started_at", "updated_at", "stale")


def raw_totals(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Files, records and bytes over every raw dataset."""
    return {key: sum(int(d.get(key) or 0) for d in raw.values())
            for key in ("files", "records", "bytes")}


def stages(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Events in and out of each stage, as far as each part reports them."""
    ingest = data.get("ingest") or {}
    etl = data.get("etl") or {}
    raw = raw_totals(data.get("raw") or {})
    return [
        {"stage": "ingest API",
         "in": None if ingest.get("accepted") is None
         else int(ingest["accepted"]) + int(ingest.get("rejected") or 0),
         "out": ingest.get("accepted")},
        {"stage": "raw writer (raw lake)", "in": None, "out": raw["records"]},
        {"stage": "ETL (Parquet lake)", "in": etl.get("rows_in"), "out": etl.get("rows_out")},
    ]


def reasons(counts: Any) -> list[dict[str, Any]]:
    """`{reason: n}` as rows, largest first."""
    if not isinstance(counts, Mapping):
        return []
    return sorted(({"reason": k, "count": v} for k, v in counts.items()),
                  key=lambda r: -int(r["count"] or 0))


def is_empty(data: Mapping[str, Any]) -> bool:
    """Nothing has arrived anywhere yet."""
    etl = data.get("etl") or {}
    return not raw_totals(data.get("raw") or {})["records"] and not etl.get("rows_out")


def render(settings: Settings, period: TimeRange) -> None:
    q = read("mad.query.overview", importlib.import_module, "mad.query.overview")
    if q is None:
        return
    data = read("the overview", q.overview, settings)
    if data is None:
        return
    for problem in data.get("errors") or []:
        st.warning(str(problem))
    if is_empty(data):
        st.info(EMPTY)
    etl = data.get("etl") or {}
    det = data.get("detect") or {}
    raw = raw_totals(data.get("raw") or {})
    quarantined = sum(int(v or 0) for v in (etl.get("quarantined") or {}).values())
    ratio = etl.get("compression_ratio")
    row = st.columns(6)
    ingest = data.get("ingest") or {}
    row = st.columns(6)
    row[0].metric("Accepted", number(ingest.get("accepted")))
    row[1].metric("Raw records", number(raw["records"]))
    row[2].metric("ETL rows out", number(etl.get("rows_out")))
    row[3].metric("Stream lag", number(ingest.get("lag_records")))
    row[4].metric("ETL backlog (files)", number(etl.get("pending_raw_files")))
    row[5].metric("Detection lag", seconds(det.get("lag_s")))
    row = st.columns(6)
    row[0].metric("Rejected", number(ingest.get("rejected")))
    row[1].metric("Duplicates", number(etl.get("duplicates")))
    row[2].metric("Late events", number(etl.get("late")))
    row[3].metric("Quarantined", number(quarantined))
    row[4].metric("Raw→Parquet", f"{ratio:.1f}x" if ratio else "–")
    row[5].metric("ETL runs failed", number(etl.get("runs_failed")))
    row = st.columns(6)
    row[0].metric("Open incidents", number(det.get("open_incidents")))
    row[1].metric("Alerts pending", number(det.get("pending_alerts")))
    row[2].metric("Alerts failed", number(det.get("failed_alerts")))
    row[3].metric("Alerts silenced", number(det.get("silenced")))

    left, right = st.columns([3, 2])
    with left:
        bucket = bucket_for(period)
        rows = read("the rates", q.rates, settings, period.start, period.end, bucket)
        if rows:
            df = frame(rows)
            x = charts.time_column(df)
            values = [c for c in df.columns if c != x and df[c].dtype.kind in "fiu"]
            if x is not None and values:
                st.altair_chart(charts.lines(df, x, values, f"Events per {bucket} bucket"),
                                width="stretch")
        elif rows is not None:
            st.caption(f"No events in the {period.label}.")
    with right:
        st.subheader("In and out per stage")
        st.dataframe(frame(stages(data)), hide_index=True, width="stretch")
        st.caption(f"Detection scored to {when(det.get('scored_to'))}; newest window "
                   f"{when(det.get('newest_window'))}. Raw lake: {number(raw['files'])} "
                   f"files, {number(raw['bytes'])} bytes.")
    left, right = st.columns(2)
    with left:
        st.subheader("Quarantined, by reason")
        rows = reasons(etl.get("quarantined"))
        if rows:
            st.dataframe(frame(rows), hide_index=True, width="stretch")
        else:
            st.caption("Nothing quarantined.")
    with right:
        st.subheader("Rejected at ingest, by reason")
        rows = reasons(ingest.get("rejected_by_reason"))
        if rows:
            st.dataframe(frame(rows), hide_index=True, width="stretch")
        else:
            st.caption("Nothing rejected.")
    st.subheader("Components")
    components = data.get("components") or []
    if components:
        st.dataframe(frame(components, COMPONENT_COLUMNS), hide_index=True, width="stretch")
    else:
        st.caption("No component has reported: `mad up` shows its parts here.")
