"""Overview: events in and out per stage, stream lag, ETL backlog, rates (traffic by event
time, pipeline throughput by write time), compression, rejected and quarantined counts by
reason, component health and restarts (`mad.query.overview`, traffic from
`mad.query.services`)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import streamlit as st

from mad.config import Settings
from mad.dashboard import charts
from mad.dashboard.ui import (
    EMPTY,
    TimeRange,
    bucket_for,
    clamp,
    frame,
    held_note,
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
    """Records in and out of each stage, from what each part has persisted: in = out +
    removed (rejected, duplicates, quarantined) + waiting (in the stream, or raw lines the
    ETL has not read yet)."""
    ingest = data.get("ingest") or {}
    etl = data.get("etl") or {}
    good = int(ingest.get("accepted") or 0)  # records in the raw datasets
    rejected = int(ingest.get("rejected") or 0)  # records in md-raw-errors
    in_stream = int(ingest.get("lag_records") or 0)
    rows_in, rows_out = int(etl.get("rows_in") or 0), int(etl.get("rows_out") or 0)
    return [
        {"stage": "ingest API + raw writer", "in": good + rejected + in_stream,
         "out": good, "removed": rejected, "waiting": in_stream},
        {"stage": "ETL (Parquet lake)", "in": good, "out": rows_out,
         "removed": rows_in - rows_out, "waiting": max(0, good - rows_in)},
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
    row[4].metric("Raw→Parquet", f"{ratio:.1f}x" if ratio else "–",
                  help="bytes of the raw lake as written (gzip JSONL unless "
                       "writer.gzip is off) over bytes of the Parquet lake")
    row[5].metric("ETL runs failed", number(etl.get("runs_failed")))
    row = st.columns(6)
    row[0].metric("Open incidents", number(det.get("open_incidents")))
    row[1].metric("Alerts pending", number(det.get("pending_alerts")))
    row[2].metric("Alerts failed", number(det.get("failed_alerts")))
    row[3].metric("Alerts silenced", number(det.get("silenced")))
    quality = data.get("quality") or {}
    row[4].metric("Lowest quality score", number(quality.get("lowest_score")),
                  help=f"0-100, of {quality.get('lowest_dataset') or 'no dataset yet'}: the "
                       "lowest of the datasets' scores on the Quality tab")
    row[5].metric("Held partitions", number(quality.get("held")),
                  help="partitions the quality gate holds: left out of detection and of "
                       "this dashboard until accepted on the Quality tab")

    left, right = st.columns(2)
    with left:
        traffic(settings, period)
    with right:
        throughput(settings, q, period)
    stage_col, quarantine_col, rejected_col = st.columns([4, 3, 3])
    with stage_col:
        st.subheader("In and out per stage")
        st.dataframe(frame(stages(data)), hide_index=True, width="stretch")
        st.caption(f"Detection scored to {when(det.get('scored_to'))}; newest window "
                   f"{when(det.get('newest_window'))}; events complete to "
                   f"{when(det.get('complete_to'))}; "
                   f"{number(det.get('late_windows'))} scored windows changed later "
                   f"(+{number(det.get('late_events'))} late events). Raw lake: "
                   f"{number(raw['files'])} files, {number(raw['bytes'])} bytes.")
    with quarantine_col:
        st.subheader("Quarantined")
        rows = reasons(etl.get("quarantined"))
        if rows:
            st.dataframe(frame(rows), hide_index=True, width="stretch")
        else:
            st.caption("Nothing quarantined.")
    with rejected_col:
        st.subheader("Rejected at ingest")
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


def traffic(settings: Settings, period: TimeRange) -> None:
    """Requests per second of each service by event time, from the aggregates."""
    q = read("mad.query.services", importlib.import_module, "mad.query.services")
    if q is None:
        return
    window = "5m" if period.end - period.start <= timedelta(days=2) else "1h"
    shown = clamp(period, getattr(q, "MAX_DAYS", {}).get(window, 40.0))
    rows = read("the traffic", q.service_metrics, settings, window, shown.start, shown.end)
    held_note(getattr(rows, "held", None))
    if rows:
        st.altair_chart(charts.lines(frame(rows), "window_start", ["request_rate"],
                                     f"Requests per second by event time ({window} windows)",
                                     color="service"), width="stretch")
    elif rows is not None:
        st.caption(f"No aggregates in the {period.label}.")


def throughput(settings: Settings, q: Any, period: TimeRange) -> None:
    """What the raw writer and the ETL wrote per bucket, by the time they wrote it."""
    bucket = bucket_for(period)
    rows = read("the rates", q.rates, settings, period.start, period.end, bucket)
    if not rows:
        if rows is not None:
            st.caption(f"Nothing written in the {period.label}.")
        return
    df = frame(rows)
    values = [c for c in ("events_in", "rejected", "rows_out") if c in df.columns]
    st.altair_chart(charts.bars(df, "bucket_start", values,
                                f"Pipeline throughput per {bucket} (by write time)",
                                stacked=False, unit="records"), width="stretch")
